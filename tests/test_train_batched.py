"""`desim train --envs N`: MAPPO and IPPO on batched floors, with the same checkpoints, curves,
store rows and rollback gate as on simulated floors; the checkpoint runs as a brain in both tempos."""
import json
from pathlib import Path

import pytest

from desim.policies.checkpoint import load_checkpoint
from desim.store import Store
from test_train_cli import QUICK, ROOT, desim, one_line_error


def test_ippo_on_batched_floors_writes_what_simulated_training_writes_and_runs_in_both_tempos(tmp_path):
    sc = tmp_path / "quick.toml"
    sc.write_text(QUICK.replace("[train.mappo]", "[train.ippo]"))
    store, out = tmp_path / "runs.duckdb", tmp_path / "ckpt"
    p = desim("train", sc, "--algo", "ippo", "--steps", 3200, "--envs", 16, "--seed", 2, "--out", out,
              "--store", store, "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    # 16 floors x 100-step rollouts: whole iterations of 1,600 env steps, two candidates
    assert r["steps"] == 3200 and r["algo"] == "ippo" and len(r["promotions"]) == 2
    ck = load_checkpoint(out / "latest.pt")
    assert ck["env_kwargs"]["floors"] == "batched" and ck["env_kwargs"]["observations"] == "features"
    run = Store(store).get_run(r["run_id"])
    assert run["status"] == "complete" and run["config"]["train"]["floors"] == "batched"
    curves = Store(store).table("train_curves", r["run_id"], as_dicts=True)
    metrics = {c["metric"] for c in curves}
    assert {"return", "loss", "entropy", "value_error", "eval_return"} <= metrics
    assert any(m.startswith("credit/") for m in metrics)
    assert [p["candidate_version"] for p in Store(store).table("promotions", r["run_id"], as_dicts=True)] == [1, 2]
    for scenario in ("warehouse-tiny.toml", "warehouse-tiny-event.toml"):
        p = desim("run", ROOT / "scenarios" / scenario, "--brain", f"checkpoint:{out / 'latest.pt'}",
                  "--until", 60, "--json", "--no-store")
        assert p.returncode == 0, (scenario, p.stderr)
        assert json.loads(p.stdout)["tempo"] == ("event" if "event" in scenario else "tick")


def test_rware_observations_train_and_are_refused_as_a_brain_in_one_line(tmp_path):
    sc = tmp_path / "quick.toml"
    sc.write_text(QUICK)
    out = tmp_path / "ckpt"
    p = desim("train", sc, "--algo", "mappo", "--steps", 1600, "--envs", 16, "--obs", "rware", "--out", out,
              "--store", tmp_path / "s.duckdb", "--json")
    assert p.returncode == 0, p.stderr
    ck = load_checkpoint(out / "latest.pt")
    assert ck["env_kwargs"]["observations"] == "rware" and ck["info"]["obs_dim"] == 71  # rware's vector
    one_line_error(desim("run", ROOT / "scenarios" / "warehouse-tiny.toml", "--brain", f"checkpoint:{out / 'latest.pt'}",
                         "--until", 20, "--no-store"), "rware's observation vector")


def test_vdn_trains_on_batched_floors_through_a_host_view_and_its_checkpoint_runs_as_a_brain(tmp_path):
    """Learners without an on-device loop (VDN, QMIX, COMA) step batched floors through numpy arrays."""
    sc = tmp_path / "quick.toml"
    sc.write_text(QUICK)
    store, out = tmp_path / "runs.duckdb", tmp_path / "ckpt"
    p = desim("train", sc, "--algo", "vdn", "--steps", 1600, "--envs", 8, "--out", out, "--store", store, "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["steps"] >= 1600 and r["algo"] == "vdn"
    ck = load_checkpoint(out / "latest.pt")
    assert ck["env_kwargs"]["floors"] == "batched"
    metrics = {c["metric"] for c in Store(store).table("train_curves", r["run_id"], as_dicts=True)}
    assert "return" in metrics and "eval_return" in metrics  # 8 floors x 100-step episodes finished and were judged
    p = desim("run", ROOT / "scenarios" / "warehouse-tiny.toml", "--brain", f"checkpoint:{out / 'latest.pt'}",
              "--until", 30, "--json", "--no-store")
    assert p.returncode == 0, p.stderr


EVENT = QUICK.replace('tempo = "tick"', 'tempo = "event"')


@pytest.mark.parametrize("text, args, needles", [
    (QUICK + "[train.qmix]\nrole_rotation = true\n", ("--algo", "qmix", "--envs", "8"), ("train.qmix.role_rotation", "batched floors")),
    (QUICK, ("--algo", "mappo", "--obs", "rware"), ("train.observations", "batched floors")),
    (QUICK, ("--algo", "mappo", "--envs", "0"), ("--envs",)),
    (EVENT, ("--algo", "mappo", "--envs", "8"), ("warehouse.tempo", "tick")),
    (QUICK + "recurrent = true\nchunk = 10\n", ("--algo", "mappo", "--envs", "8"), ("train.mappo.recurrent", "batched floors")),
])
def test_what_batched_floors_cannot_do_is_one_line_exit_2_and_nothing_is_recorded(text, args, needles, tmp_path):
    sc = tmp_path / "s.toml"
    sc.write_text(text)
    store = tmp_path / "s.duckdb"
    one_line_error(desim("train", sc, "--steps", "1600", "--store", store, *args), *needles)
    assert not store.exists() or Store(store).list_runs() == []


def test_shaping_terms_reach_the_floors_training_steps(tmp_path, monkeypatch):
    """[train] shaping_terms is not only checked: the floors a run trains on weigh their terms with it."""
    from desim.policies import train as T

    made = []
    real = T.make_floors

    def spy(*args, **kw):
        env = real(*args, **kw)
        made.append(env)
        return env

    monkeypatch.setattr(T, "make_floors", spy)
    sc = tmp_path / "quick.toml"
    sc.write_text(QUICK.replace("[train]\n", "[train]\nshaping_terms = { carrying = 2.0, distance = 0.5, goal = 3.0 }\n", 1))
    T.train(str(sc), "mappo", 1600, device="cpu", out_dir=tmp_path / "ck", store_path=tmp_path / "s.duckdb",
            progress=False, train_cfg={"floors": "batched", "n_envs": 16})
    assert made and made[0].terms == {"carrying": 2.0, "distance": 0.5, "goal": 3.0}
