"""Inputs to the policy layer that a user gets wrong (issue 11).

A file that is not a desim checkpoint is refused with one line in desim's words (never PyTorch's
``weights_only`` page), by ``load_checkpoint``, by a ``checkpoint:PATH`` brain spec and by ``desim run``;
and the training progress bar counts to the env steps training actually runs, the summary's ``steps``.
"""
import collections
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desim.models.warehouse.features import obs_dim
from desim.policies import make_brain
from desim.policies import train as train_mod
from desim.policies.checkpoint import load_brain, load_checkpoint, load_learner, save_checkpoint
from desim.policies.common import EnvInfo
from desim.policies.mappo import MAPPO
from desim.policies.train import planned_steps, steps_per_iteration

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
ENV = dict(size="tiny", robots=2, max_steps=20, obs_radius=1)
LEGACY_MAGIC = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)[:-1]  # how an old-style torch.save file starts
INFO = EnvInfo(n_agents=2, obs_dim=obs_dim(1), state_dim=2 * obs_dim(1), n_actions=5)


class Opaque:
    """An arbitrary Python object: pickled by torch.save, refused by weights_only loading."""


def real_checkpoint(path: Path, **extra) -> Path:
    return save_checkpoint(path, MAPPO(INFO, {}, "cpu", seed=0), algo="mappo", env_kwargs=ENV, obs_radius=1,
                           version=1, env_steps=0, **extra)


def refused(path, *needles) -> str:
    """load_checkpoint(path) raises ValueError in one line of desim's words naming the path; the line."""
    with pytest.raises(ValueError) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert "\n" not in msg and "\r" not in msg, msg
    assert "weights_only" not in msg and "torch.load" not in msg and len(msg) < 300, msg
    assert str(path) in msg, msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


# -- one test per kind of file that is not a checkpoint -----------------------------------
def test_a_missing_file(tmp_path):
    refused(tmp_path / "nope.pt", "no such checkpoint file")


def test_a_directory(tmp_path):
    refused(tmp_path, "is a directory")


def test_an_empty_file(tmp_path):
    (p := tmp_path / "empty.pt").write_bytes(b"")
    refused(p, "is empty")


def test_a_text_file(tmp_path):
    (p := tmp_path / "notes.txt").write_text("these are not weights\nsecond line\n")
    refused(p, "text file", "not a desim checkpoint")


def test_random_bytes(tmp_path):
    (p := tmp_path / "noise.pt").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    refused(p, "not a desim checkpoint", "not a PyTorch file")


def test_a_plain_python_pickle(tmp_path):
    (p := tmp_path / "data.pkl").write_bytes(pickle.dumps({"algo": "mappo"}))
    refused(p, "Python pickle", "not a PyTorch file")


def test_a_truncated_checkpoint(tmp_path):
    whole = real_checkpoint(tmp_path / "whole.pt").read_bytes()
    load_checkpoint(tmp_path / "whole.pt")  # the whole file loads
    for cut in (len(whole) // 2, len(whole) - 1, 100):
        (p := tmp_path / f"cut{cut}.pt").write_bytes(whole[:cut])
        refused(p, "truncated or damaged")


def test_a_truncated_legacy_torch_file(tmp_path):
    torch.save({"algo": "mappo", "learner": {}}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    whole = (tmp_path / "old.pt").read_bytes()
    assert whole.startswith(LEGACY_MAGIC)
    (p := tmp_path / "cut.pt").write_bytes(whole[: len(whole) // 2])
    refused(p, "truncated or damaged")


def test_a_zip_archive_that_is_not_a_pytorch_file(tmp_path):
    import zipfile

    with zipfile.ZipFile(p := tmp_path / "docs.zip", "w") as z:
        z.writestr("readme.txt", "hello")
    refused(p, "zip archive")


@pytest.mark.parametrize("payload, holds", [({"a": 1}, "no 'algo' or 'learner' entry"), (torch.zeros(3), "it holds a Tensor"),
                                            ([1, 2, 3], "it holds a list"), ({"algo": "mappo"}, "'learner'")])
def test_a_pytorch_file_that_is_not_a_desim_checkpoint(tmp_path, payload, holds):
    torch.save(payload, p := tmp_path / "other.pt")
    refused(p, "is a PyTorch file but not a desim checkpoint (no ", holds)


@pytest.mark.parametrize("legacy", [False, True])
def test_a_pickle_of_python_objects_is_refused_for_safety(tmp_path, legacy):
    torch.save({"algo": "mappo", "x": Opaque()}, p := tmp_path / "objects.pt", _use_new_zipfile_serialization=not legacy)
    msg = refused(p, "Python objects", "will not unpickle for safety", "Opaque")
    assert "GLOBAL" not in msg and "add_safe_globals" not in msg


def test_an_ordered_dict_of_objects_is_refused_for_safety(tmp_path):
    torch.save(collections.OrderedDict(algo="mappo", learner=Opaque()), p := tmp_path / "objects.pt")
    refused(p, "will not unpickle for safety")


def test_a_checkpoint_of_an_unknown_learner(tmp_path):
    real_checkpoint(tmp_path / "ok.pt")
    ck = torch.load(tmp_path / "ok.pt", weights_only=True)
    for algo in ("dqn", 7):
        torch.save({**ck, "algo": algo}, p := tmp_path / f"{algo}.pt")
        refused(p, "unknown learner", repr(algo), "mappo")


def test_a_checkpoint_of_another_format_or_incomplete_or_damaged(tmp_path):
    real_checkpoint(tmp_path / "ok.pt")
    ck = torch.load(tmp_path / "ok.pt", weights_only=True)
    torch.save({**ck, "format": 99}, p := tmp_path / "f99.pt")
    refused(p, "format 99", "reads format 1")
    torch.save({k: v for k, v in ck.items() if k != "obs_radius"}, p := tmp_path / "partial.pt")
    refused(p, "incomplete", "'obs_radius'")
    torch.save({**ck, "policy_version": "one"}, p := tmp_path / "typed.pt")
    refused(p, "'policy_version' is a str")
    # every entry present, but weights that do not fit the learner: load_learner says so in one line
    torch.save({**ck, "learner": {"actor": {"nonsense": torch.zeros(2)}}}, p := tmp_path / "weights.pt")
    with pytest.raises(ValueError) as e:
        load_learner(p, "cpu")
    assert "\n" not in str(e.value) and str(p) in str(e.value) and "do not fit the learner" in str(e.value), str(e.value)


def test_a_real_checkpoint_still_loads_and_runs_as_a_brain(tmp_path):
    real_checkpoint(p := tmp_path / "ok.pt")
    assert load_checkpoint(p)["algo"] == "mappo"
    brain = load_brain(str(p), np.random.default_rng(0), "argmax")
    assert brain.algo == "mappo" and brain.n_agents == 2


# -- random bytes never produce anything but ValueError ---------------------------------
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=st.sampled_from([b"", b"PK\x03\x04", LEGACY_MAGIC, b"\x80\x02", b"\x80\x04"]),
       body=st.binary(max_size=1500))
def test_random_bytes_are_only_ever_a_value_error(tmp_path, prefix, body):
    p = tmp_path / "fuzz.pt"
    p.write_bytes(prefix + body)
    refused(p)


# -- the spec and the CLI: the same one line --------------------------------------------
def test_a_checkpoint_brain_spec_surfaces_the_value_error(tmp_path):
    (p := tmp_path / "notes.txt").write_text("not weights")
    for spec in (f"checkpoint:{p}", f"checkpoint:{p}#argmax"):
        with pytest.raises(ValueError) as e:
            make_brain(spec, np.random.default_rng(0))
        assert "\n" not in str(e.value) and str(p) in str(e.value) and "text file" in str(e.value), str(e.value)


def test_desim_run_with_a_foreign_checkpoint_is_one_line_exit_2(tmp_path):
    torch.save({"x": Opaque()}, p := tmp_path / "objects.pt")
    proc = subprocess.run([sys.executable, "-m", "desim.app.cli", "run", ROOT / "scenarios" / "warehouse-tiny.toml",
                           "--brain", f"checkpoint:{p}", "--until", "5", "--no-store"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("desim: error"), proc.stderr
    assert "will not unpickle for safety" in lines[0] and "weights_only" not in lines[0], lines[0]


# -- the progress bar counts to the steps that run ---------------------------------------
@pytest.mark.parametrize("requested, per, expected", [(1, 16, 16), (16, 16, 16), (17, 16, 32), (20, 16, 32),
                                                      (3200, 400, 3200), (3201, 400, 3600), (7, 1, 7), (5, 2, 6)])
def test_planned_steps_rounds_up_to_whole_iterations(requested, per, expected):
    assert planned_steps(requested, per) == expected


@given(st.integers(1, 10**7), st.integers(1, 10**4))
def test_planned_steps_is_the_least_multiple_not_below_the_request(requested, per):
    n = planned_steps(requested, per)
    assert n % per == 0 and requested <= n < requested + per


def test_planned_steps_refuses_nonsense():
    for bad in ((0, 4), (4, 0), (-1, 4)):
        with pytest.raises(ValueError):
            planned_steps(*bad)


TINY = (ROOT / "scenarios" / "train-tiny.toml").read_text().split("[train]")[0] + """
[train]
episode_steps = 20
n_envs = 2
checkpoint_every = 1000000
eval_episodes = 1
rollback = false

[train.mappo]
rollout = 8
epochs = 1
"""


@pytest.mark.parametrize("algo, requested, per", [("mappo", 20, 16), ("mappo", 16, 16), ("mappo", 1, 16), ("vdn", 7, 2)])
def test_the_bar_ends_at_the_steps_the_summary_reports(tmp_path, monkeypatch, algo, requested, per):
    bars = []

    class Recorded(train_mod._Bar):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            bars.append(self)

    monkeypatch.setattr(train_mod, "_Bar", Recorded)
    (sc := tmp_path / "tiny.toml").write_text(TINY)
    r = train_mod.train(str(sc), algo, requested, device="cpu", seed=0, out_dir=tmp_path / "ck",
                        store_path=tmp_path / "s.duckdb", progress=False)
    (bar,) = bars
    assert planned_steps(requested, per) == bar.planned == r["steps"], (bar.planned, r["steps"])
    assert bar.total == bar.completed == r["steps"] and r["requested_steps"] == requested
    assert r["steps"] % per == 0 and r["steps"] >= requested


def test_steps_per_iteration_follows_the_learners_rollout():
    assert steps_per_iteration(MAPPO(INFO, {"rollout": 8}, "cpu", seed=0), 2) == 16
    assert steps_per_iteration(MAPPO(INFO, {"rollout": 128}, "cpu", seed=0), 8) == 1024

    class Own:
        def steps_per_iteration(self, n_envs):
            return 3 * n_envs

    assert steps_per_iteration(Own(), 4) == 12


def test_the_bar_shows_an_eta_and_env_steps_per_second():
    from rich.progress import TimeRemainingColumn

    bar = train_mod._Bar(32, "mappo tiny", True)
    try:
        assert any(isinstance(c, TimeRemainingColumn) for c in bar.bar.columns)
        assert any("env steps/s" in getattr(c, "text_format", "") for c in bar.bar.columns)
        assert bar.bar.tasks[0].total == 32 == bar.total == bar.planned
        bar.update(completed=16)
        assert bar.bar.tasks[0].completed == 16 == bar.completed
    finally:
        bar.close()
