"""`desim train`: checkpoints, curves and promotions in the store; learned
policies as brains in both tempos; rollback of a sabotaged candidate."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from desim.store import Store
from desim.models.warehouse.env import VectorWarehouseEnv
from desim.models.warehouse.features import obs_dim
from desim.policies.checkpoint import load_checkpoint
from desim.policies.common import EnvInfo
from desim.policies.mappo import MAPPO
from desim.policies.rollback import Gatekeeper, held_out_return
from desim.policies.train import Checkpoints
from desim.scenario import validate

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def desim(*args):
    return subprocess.run([sys.executable, "-m", "desim.app.cli", *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def one_line_error(p, *needles):
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("desim: error"), p.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


# A small, quick training setup: short episodes, few copies, two candidates.
QUICK = (ROOT / "scenarios" / "train-tiny.toml").read_text().split("[train]")[0] + """
[train]
episode_steps = 100
n_envs = 4
checkpoint_every = 1600
eval_episodes = 2
shaping = 0.5

[train.mappo]
rollout = 100
epochs = 2
"""


@pytest.mark.parametrize("args, needles", [
    (("--algo", "dqn", "--steps", "10"), ("unknown algo 'dqn'", "mappo")),
    (("--algo", "mappo", "--steps", "0"), ("--steps", "positive")),
    (("--algo", "mappo", "--steps", "-5"), ("--steps",)),
    (("--algo", "mappo", "--steps", "10", "--device", "bogus"), ("--device", "'bogus'")),
])
def test_bad_arguments_are_one_line_exit_2(args, needles, tmp_path):
    one_line_error(desim("train", ROOT / "scenarios" / "train-tiny.toml", *args, "--store", tmp_path / "s.duckdb"), *needles)
    assert not (tmp_path / "s.duckdb").exists()  # refused before anything was recorded


def test_bad_scenarios_are_one_line_exit_2(tmp_path):
    one_line_error(desim("train", tmp_path / "missing.toml", "--algo", "mappo", "--steps", "10"), "no such file")
    bad = tmp_path / "bad.toml"
    bad.write_text(QUICK.replace("n_envs = 4", "n_envz = 4"))
    one_line_error(desim("train", bad, "--algo", "mappo", "--steps", "10", "--store", tmp_path / "s.duckdb"),
                   "train.n_envz", "unknown field")
    bad.write_text(QUICK.replace("epochs = 2", "epochz = 2"))
    one_line_error(desim("train", bad, "--algo", "mappo", "--steps", "10", "--store", tmp_path / "s.duckdb"), "epochz")
    net = ROOT / "scenarios" / "network-partition.toml"
    one_line_error(desim("train", net, "--algo", "mappo", "--steps", "10", "--store", tmp_path / "s.duckdb"), "[warehouse]")


@pytest.mark.parametrize("algo, line, needles", [
    ("mappo", 'rollout = "abc"', ("train.mappo.rollout", "whole number")),
    ("mappo", "rollout = -4", ("train.mappo.rollout", "at least 1")),
    ("mappo", "gamma = 1.5", ("train.mappo.gamma", "[0, 1]")),
    ("mappo", "recurrent = true\nchunk = 7", ("train.mappo.chunk", "divide rollout (100)")),
    ("ippo", "adoption_clock = 'hours'", ("train.ippo.adoption_clock", "'steps'")),
    ("qmix", "lr = 0", ("train.qmix.lr", "positive")),
    ("vdn", "adoption_lag = -1.0", ("train.vdn.adoption_lag", "negative")),
    ("coma", "role_rotation = 1", ("train.coma.role_rotation", "true or false")),
])
def test_bad_learner_hyperparameters_are_one_line_exit_2_and_nothing_is_recorded(algo, line, needles, tmp_path):
    bad = tmp_path / "bad.toml"
    if algo == "mappo":  # into QUICK's own table, replacing its rollout when the line sets one
        keep = "" if line.startswith("rollout") else "rollout = 100\n"
        text = QUICK.replace("[train.mappo]\nrollout = 100\n", f"[train.mappo]\n{keep}{line}\n")
    else:
        text = QUICK + f"\n[train.{algo}]\n{line}\n"
    bad.write_text(text)
    one_line_error(desim("train", bad, "--algo", algo, "--steps", "10", "--store", tmp_path / "s.duckdb"), *needles)
    assert not (tmp_path / "s.duckdb").exists()


def test_train_writes_checkpoints_curves_promotions_and_the_policy_runs_in_both_tempos(tmp_path):
    sc = tmp_path / "quick.toml"
    sc.write_text(QUICK)
    store, out = tmp_path / "runs.duckdb", tmp_path / "ckpt"
    p = desim("train", sc, "--algo", "mappo", "--steps", 3200, "--seed", 3, "--out", out, "--store", store, "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["algo"] == "mappo" and r["steps"] >= 3200 and r["env_steps_per_s"] > 0 and r["wall_s"] > 0
    assert [Path(c).name for c in r["checkpoints"]] == ["mappo-v0001.pt", "mappo-v0002.pt"]
    assert Path(r["checkpoint"]) == out / "latest.pt" and (out / "latest.pt").is_file()
    assert r["final_return"] is not None and len(r["promotions"]) == 2
    ck = load_checkpoint(out / "latest.pt")
    assert ck["algo"] == "mappo" and ck["policy_version"] == r["incumbent_version"] and ck["obs_radius"] == 1
    # the env is the scenario as written, stored as plain data
    trained_on = validate(ck["env_kwargs"]["scenario"])
    assert trained_on.warehouse.size == "tiny" and trained_on.warehouse.robots == 2 and ck["env_kwargs"]["max_steps"] == 100

    st = Store(store)
    run = st.get_run(r["run_id"])
    assert run["kind"] == "train" and run["status"] == "complete" and run["brain"] == "mappo"
    curves = st.table("train_curves", r["run_id"], as_dicts=True)
    assert len(curves) > 0 and {"return", "loss", "entropy", "value_error"} <= {c["metric"] for c in curves}
    assert any(c["metric"].startswith("credit/") for c in curves)
    promos = st.table("promotions", r["run_id"], as_dicts=True)
    assert [p["candidate_version"] for p in promos] == [1, 2]
    assert all(p["decision"] in ("promote", "rollback") and p["reason"] for p in promos)

    for scenario in ("warehouse-tiny.toml", "warehouse-tiny-event.toml"):
        p = desim("run", ROOT / "scenarios" / scenario, "--brain", f"checkpoint:{out / 'latest.pt'}",
                  "--until", 120, "--json", "--no-store")
        assert p.returncode == 0, (scenario, p.stderr)
        s = json.loads(p.stdout)
        assert s["brain"].startswith("checkpoint:") and s["sim_time"] == pytest.approx(120.0)
        assert s["tempo"] == ("event" if "event" in scenario else "tick")

    one_line_error(desim("run", ROOT / "scenarios" / "warehouse-tiny.toml", "--brain", f"checkpoint:{tmp_path}/nope.pt",
                         "--no-store"), "no checkpoint")
    # a 2-robot policy on a 4-robot floor: refused in one line, not a traceback
    one_line_error(desim("run", ROOT / "scenarios" / "warehouse-small.toml", "--brain", f"checkpoint:{out / 'latest.pt'}",
                         "--until", 20, "--no-store"), "trained for 2 robots")


# -- rollback -----------------------------------------------------------------------
ENV = dict(size="tiny", robots=2, max_steps=200, obs_radius=1)
INFO = EnvInfo(n_agents=2, obs_dim=obs_dim(1), state_dim=2 * obs_dim(1), n_actions=5)


def rule(obs: np.ndarray) -> np.ndarray:
    """Follow the guidance features: toggle when told to, else the action that gets closer."""
    guide = obs[..., 10:13]
    a = np.where(guide.max(-1) > 0, guide.argmax(-1) + 1, 0)
    return np.where(obs[..., 9] > 0, 4, a)


def clone_rule(learner: MAPPO, steps: int = 300) -> None:
    """Behaviour-clone :func:`rule` into the learner's actor: a good policy in seconds, no RL needed."""
    venv = VectorWarehouseEnv(4, seed=11, **ENV)
    obs, _s, _a = venv.reset()
    xs, rng = [], np.random.default_rng(0)
    for _ in range(150):
        xs.append(obs)
        act = np.where(rng.random(obs.shape[:2]) < 0.3, rng.integers(0, 5, obs.shape[:2]), rule(obs))
        obs, _s, _r, _d, _a = venv.step(act)
    x = np.concatenate(xs).reshape(-1, obs.shape[-1])
    y = torch.as_tensor(rule(x))
    inp = learner._with_ids(x, np.tile(np.arange(2), len(x) // 2))
    opt = torch.optim.Adam(learner.actor.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(learner.actor(inp), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_a_sabotaged_candidate_is_rolled_back_and_a_good_one_promoted(tmp_path):
    store = Store(tmp_path / "runs.duckdb")
    learner = MAPPO(INFO, {}, "cpu", seed=0)
    gate = Gatekeeper(lambda lr: held_out_return(lr, ENV, episodes=2, seed=1_000_000), margin_abs=0.5, margin_frac=0.1)
    with store.run("train", scenario="rollback-test", brain="mappo") as run:
        keeper = Checkpoints(tmp_path / "ckpt", "mappo", ENV, 1, gate, run)
        first = keeper(learner, step=100)  # the untrained policy: nothing to lose to
        clone_rule(learner)
        good = keeper(learner, step=200)
        good_actor = {k: v.clone() for k, v in learner.actor.state_dict().items()}
        with torch.no_grad():  # sabotage: every weight of the actor zeroed (it only ever NOOPs)
            for p in learner.actor.parameters():
                p.zero_()
        bad = keeper(learner, step=300)

    assert first.decision == "promote" and "first candidate" in first.reason
    assert good.decision == "promote" and good.candidate_return > first.candidate_return + 1.0, good
    assert bad.decision == "rollback" and bad.candidate_return < good.candidate_return
    assert "weights reverted to v2" in bad.reason
    for k, v in learner.actor.state_dict().items():  # the learner carries on from the incumbent
        assert torch.equal(v, good_actor[k]), k
    assert learner.policy_version == 0  # updates are counted, not reverted (none happened here)
    assert load_checkpoint(tmp_path / "ckpt" / "latest.pt")["policy_version"] == 2  # latest = the incumbent
    assert (tmp_path / "ckpt" / "mappo-v0003.pt").is_file()  # the rejected candidate is kept for inspection

    rows = store.table("promotions", run.run_id, as_dicts=True)
    assert [(r["candidate_version"], r["incumbent_version"], r["decision"]) for r in rows] == [
        (1, 0, "promote"), (2, 1, "promote"), (3, 2, "rollback")]
    assert "weights reverted" in rows[2]["reason"] and rows[2]["incumbent_return"] == pytest.approx(good.candidate_return)
