"""`desim study`: the credit and nonstationarity studies (arms, the convergence criterion, the assigned
credit each arm gives, determinism for fixed seeds, the store's tables, the report) and the pipeline study."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from cli_support import call, one_line_error
from desim.app import study as S
from desim.app.study_tables import STUDY_ARMS, STUDY_CREDIT, STUDY_CURVES, STUDY_SEEDS
from desim.models.warehouse.contribution import record_episodes
from desim.models.warehouse.vector_env import BatchedWarehouseEnv
from desim.store import Store

ROOT = Path(__file__).resolve().parents[1]
# the tiny floor with 100-step episodes and small batches: a study of seconds
QUICK = (ROOT / "scenarios" / "train-tiny.toml").read_text().split("[train]")[0] + """
[train]
episode_steps = 100
checkpoint_every = 800
eval_episodes = 2
shaping = 0.5

[train.mappo]
rollout = 50
epochs = 2

[train.vdn]
batch_episodes = 4
"""
TIMING = {"train_s_per_10k", "wall_s", "train_run"}  # what may differ between two runs of the same study


# -- the criterion -------------------------------------------------------------------------------
def test_converged_needs_the_last_two_evaluations_at_the_target_and_a_plateau():
    assert S.converged([(100, 1.0), (200, 9.0), (300, 10.0)], 5.0) == (True, 200.0)
    assert S.converged([(100, 6.0), (200, 2.0), (300, 10.0)], 5.0)[0] is False  # the second last is below
    assert S.converged([(100, 6.0), (200, 8.0), (300, 20.0)], 5.0)[0] is False  # still rising: no plateau
    ok, first = S.converged([(100, 0.0), (200, 0.0)], 5.0)
    assert not ok and math.isnan(first)
    assert S.converged([(100, 0.0)], 0.0)[0] is False  # a study where nothing learned: no target, nothing converged
    assert S.converged([(100, 6.0), (200, 1.0), (300, 7.0), (400, 7.0)], 5.0) == (True, 300.0)  # after the dip


def test_final_return_is_the_mean_over_the_last_fifth():
    curve = [(s, float(s)) for s in range(100, 1001, 100)]
    assert S.final_return(curve, 1000) == pytest.approx(900.0)  # 800, 900, 1000
    assert S.final_return([(10, 3.0)], 1000) == 3.0  # no checkpoint late enough: the last one
    assert math.isnan(S.final_return([], 1000))


# -- the arms ------------------------------------------------------------------------------------
def test_credit_arms_are_the_four_methods_with_their_ratings():
    arms = S.credit_arms(["mappo", "vdn"], 0.5)
    assert [a.method for a in arms] == ["global", "difference", "value decomposition", "shaped"]
    assert {a.method: a.credit for a in arms} == {"global": "global", "difference": "difference",
                                                  "value decomposition": "utility", "shaped": "shaped"}
    assert all(a.train["floors"] == "batched" for a in arms)
    assert set(S.RATINGS) == set(S.METHODS)
    with pytest.raises(ValueError, match="unknown algo 'dqn'"):
        S.credit_arms(["dqn"], 0.5)


def test_nonstationarity_arms_compare_each_switch_with_its_control():
    arms = {a.name: a for a in S.nonstationarity_arms("mappo", 8.0, 1)}
    assert arms["reward_norm"].learner == {"reward_norm": True} and arms["reward_norm"].control == "baseline"
    assert arms["staleness"].control == "adoption_lag"  # the filter only acts on stale data
    assert arms["staleness"].learner == {"adoption_lag": 8.0, "max_staleness": 1}
    assert arms["jitter_buffer"].trained_as == "baseline"  # a deployment switch: no training of its own
    assert arms["jitter_buffer"].deploy == {"jitter_buffer": {"enabled": True}}
    assert all(a.train["floors"] == "simulated" for a in arms.values())  # rotation, lag and staleness need them


# -- assigned credit -----------------------------------------------------------------------------
def _episodes(policy, seed=3):
    env = BatchedWarehouseEnv(n_envs=6, max_steps=60, seed=seed, size="tiny", robots=2, request_queue=4)
    ep = record_episodes(env, policy, 60, seed=seed)
    env.close()
    return ep, {"size": "tiny", "robots": 2, "request_queue": 4, "max_steps": 60, "obs": "features"}


def test_assigned_credit_of_each_allocation_over_recorded_episodes():
    g = torch.Generator().manual_seed(0)
    ep, kw = _episodes(lambda obs: torch.randint(0, 5, obs.shape[:2], generator=g))
    E = ep.team_return.shape[0]
    glob = S.assigned_credit("global", None, ep, kw, 3)
    assert torch.equal(glob, ep.team_return[:, None].expand(E, 2).double())
    ind = S.assigned_credit("individual", None, ep, kw, 3)
    assert torch.allclose(ind.sum(1), ep.team_return.double())  # the replay is the recorded episode
    diff = S.assigned_credit("difference", None, ep, kw, 3)
    assert diff.shape == (E, 2) and torch.isfinite(diff).all()
    # a robot that only ever NOOPs changes nothing: its difference rewards are 0
    ep2, _ = _episodes(lambda obs: torch.stack([torch.randint(0, 5, obs.shape[:1], generator=g),
                                               torch.zeros(obs.shape[0], dtype=torch.long)], 1))
    assert torch.equal(S.assigned_credit("difference", None, ep2, kw, 3)[:, 1], torch.zeros(E, dtype=torch.float64))


# -- the study, end to end -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_studies(tmp_path_factory):
    """The same credit study twice (fixed seeds), each into its own store."""
    d = tmp_path_factory.mktemp("study")
    sc = d / "quick.toml"
    sc.write_text(QUICK)
    out = []
    for k in range(2):
        rep = S.run_study("credit", sc, algos=["mappo", "vdn"], seeds=2, steps=1600, envs=8, episodes=4, until=60,
                          store_path=d / f"s{k}.duckdb", out_dir=d / f"ck{k}", evaluations=2, eval_episodes=2)
        out.append((rep, Store(d / f"s{k}.duckdb")))
    return out


def test_the_study_writes_its_tables_and_a_train_run_per_arm_and_seed(two_studies):
    rep, store = two_studies[0]
    run = store.get_run(rep["run_id"])
    assert run["kind"] == "study" and run["status"] == "complete" and run["config"]["study"] == "credit"
    arms = store.table(STUDY_ARMS.name, rep["run_id"], as_dicts=True)
    assert [a["method"] for a in arms] == ["global", "difference", "value decomposition", "shaped"]
    assert [a["rated_traceability"] for a in arms] == ["minimal", "high", "moderate", "very high"]
    seeds = store.table(STUDY_SEEDS.name, rep["run_id"], as_dicts=True)
    assert len(seeds) == 8 and {s["seed"] for s in seeds} == {0, 1}
    trains = {r["run_id"] for r in store.list_runs(kind="train")}
    assert {s["train_run"] for s in seeds} <= trains and len(trains) == 8
    for s in seeds:
        assert s["steps"] >= 1600 and s["params"] > 0 and s["dph_tick"] >= 0 and s["dph_event"] >= 0
    credit = store.table(STUDY_CREDIT.name, rep["run_id"], as_dicts=True)
    assert len(credit) == 4 * 2 * 4 * 2  # arms x seeds x episodes x robots
    glob = [c for c in credit if c["arm"].startswith("global")]
    for e in {(c["seed"], c["episode"]) for c in glob}:  # global credit: the same for both robots of an episode
        assert len({c["assigned"] for c in glob if (c["seed"], c["episode"]) == e}) == 1
    assert all(math.isnan(s["traceability"]) for s in seeds if s["method"] == "global")  # never reported as 0
    curves = store.table(STUDY_CURVES.name, rep["run_id"], as_dicts=True)
    assert len(curves) == 8 * 2  # arms x seeds x the two evaluations asked for
    assert run["config"]["criterion"]["evaluations"] == 2 and run["config"]["criterion"]["eval_episodes"] == 2


def test_the_study_is_deterministic_for_fixed_seeds(two_studies):
    (a, sa), (b, sb) = two_studies

    def rows(store, rep, table, drop=frozenset()):
        out = []
        for r in store.table(table, rep["run_id"], as_dicts=True):
            out.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()
                        if k not in drop and k != "run_id"})
        return out

    assert rows(sa, a, STUDY_SEEDS.name, TIMING) == rows(sb, b, STUDY_SEEDS.name, TIMING)
    assert rows(sa, a, STUDY_CURVES.name) == rows(sb, b, STUDY_CURVES.name)
    assert rows(sa, a, STUDY_CREDIT.name) == rows(sb, b, STUDY_CREDIT.name)
    # so short a study delivers little; the trained weights show that the training itself repeats, bit for bit
    ck = {k: Path(sa.path).parent / f"ck{k}" for k in (0, 1)}
    files = sorted(p.relative_to(ck[0]) for p in ck[0].glob("*/latest.pt"))
    assert len(files) == 8
    for f in files:
        w0, w1 = _weights(ck[0] / f), _weights(ck[1] / f)
        assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0), f
    s0, s1 = _weights(ck[0] / "vdn-s0" / "latest.pt"), _weights(ck[0] / "vdn-s1" / "latest.pt")
    assert any(not torch.equal(s0[k], s1[k]) for k in s0)  # while another seed trains other weights


def _weights(path) -> dict:
    """Every tensor of a checkpoint, by its path in the nested dicts."""
    out = {}

    def walk(x, key):
        if isinstance(x, torch.Tensor):
            out[key] = x
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{key}/{k}")

    walk(torch.load(path, map_location="cpu", weights_only=False), "")
    return out


def test_traceability_measurement_repeats_for_a_fixed_seed_on_a_floor_where_robots_deliver():
    """A crowded tiny floor (6 robots, 30 requests) where even an untrained policy delivers now and then."""
    from desim.policies.common import EnvInfo
    from desim.policies.mappo import MAPPO

    data = {"name": "crowded", "warehouse": {"size": "tiny", "robots": 6, "zones": 1, "tempo": "tick",
                                             "request_queue": 30, "brain": "greedy"}}
    env = BatchedWarehouseEnv(n_envs=1, max_steps=100, seed=0, scenario=data)
    learner = MAPPO(EnvInfo(**env.info()), {}, torch.device("cpu"), 0)
    env.close()
    ckpt = {"env_kwargs": {"max_steps": 100}, "obs_radius": 1}
    one = S.traceability_of(learner, ckpt, "difference", data, 64, 5)
    two = S.traceability_of(learner, ckpt, "difference", data, 64, 5)
    other = S.traceability_of(learner, ckpt, "difference", data, 64, 6)
    assert any(t != 0 for t in one["rows"]["true"])  # robots delivered: the comparison below is not of zeros
    assert one["rows"] == two["rows"] and (math.isnan(one["within"]) and math.isnan(two["within"])
                                           or one["within"] == two["within"])
    assert other["rows"] != one["rows"]


def test_desim_report_writes_the_study_table_and_plots(two_studies, tmp_path):
    rep, store = two_studies[0]
    code, out, err = call("report", rep["run_id"], "--store", store.path, "--out", tmp_path / "rep")
    assert code == 0, err
    text = (tmp_path / "rep" / "report.md").read_text()
    for method in ("global", "difference", "value decomposition", "shaped"):
        assert f"| {method} |" in text
    assert "low / high / minimal" in text and "undefined" in text
    for png in ("curves.png", "finals.png", "credit.png", "deploy.png"):
        assert (tmp_path / "rep" / png).stat().st_size > 1000


# -- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("args, needles", [
    (("credit", "{sc}", "--algos", "mappo,dqn"), ("--algos", "dqn")),
    (("credit", "{sc}", "--seeds", "0"), ("--seeds",)),
    (("credit", "{sc}", "--steps", "0"), ("--steps",)),
    (("credit", "{event}"), ("warehouse.tempo", "tick")),
    (("credit", "{missing}"), ("missing.toml",)),
    (("credit", "{sc}", "--event", "{sc}"), ("--event", "event tempo")),
    (("nonstationarity", "{sc}", "--algo", "dqn"), ("dqn",)),
    (("pipeline", "{sc}"), ("pipeline",)),
])
def test_bad_study_input_is_one_line_and_nothing_is_recorded(args, needles, tmp_path):
    sc = tmp_path / "quick.toml"
    sc.write_text(QUICK)
    fill = {"sc": sc, "event": ROOT / "scenarios" / "warehouse-tiny-event.toml", "missing": tmp_path / "missing.toml"}
    store = tmp_path / "s.duckdb"
    line = one_line_error(*call("study", *(a.format(**fill) for a in args), "--store", store))
    for n in needles:
        assert n in line, line
    assert not store.exists() or Store(store).list_runs() == []


def test_the_pipeline_study_stores_each_agents_credit_and_reports_it(tmp_path):
    store = tmp_path / "s.duckdb"
    code, out, err = call("study", "pipeline", ROOT / "scenarios" / "warehouse-pipeline.toml", "--seeds", "1",
                          "--until", "300", "--store", store)
    assert code == 0, err
    assert "orders" in out and "procurement" in out and "traceability" in out
    st = Store(store)
    (run,) = st.list_runs(kind="study")
    rows = st.table("pipeline_credit", run["run_id"], as_dicts=True)
    assert {r["agent"] for r in rows} == {"orders", "procurement", "floor"}
    assert all(r["true"] in (-1.0, 0.0, 1.0) for r in rows)
    code, _, err = call("report", run["run_id"], "--store", store, "--out", tmp_path / "rep")
    assert code == 0, err
    assert "| procurement |" in (tmp_path / "rep" / "report.md").read_text()
