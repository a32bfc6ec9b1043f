"""Shared by the dashboard tests (no tests here): fill a store with real runs, and read pages with AppTest.

``fill_store`` records real, short warehouse and network runs with
:func:`desim.app.recording.record_run` and real, short training runs with
``desim train``'s own :func:`desim.policies.train.train` (:func:`real_training`):
two seeds of IPPO and one of MAPPO on the tiny floor, one IPPO run on a
second scenario (the same floor with three robots) and one IPPO run stopped
by Ctrl-C (a KeyboardInterrupt raised inside the training loop, as the
terminal raises it), which the store marks ``interrupted``.

:class:`ToyTrainer` (a tiny policy-gradient on a matrix game) writes curves
step by step from the test's own process: the live-update tests use it to
grow a ``running`` run between two reads, which a real training run in
another process cannot do on cue.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "dashboards" / "app.py")
TIMEOUT = 60  # seconds an AppTest run may take


@contextmanager
def default_store(path: Path):
    """``path`` as the dashboard's store (``DESIM_STORE``) while the block runs; the old value after."""
    old = os.environ.get("DESIM_STORE")
    os.environ["DESIM_STORE"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("DESIM_STORE", None)
        else:
            os.environ["DESIM_STORE"] = old


def app_page(page: str | None = None):
    """The app run by AppTest, switched to ``views/<page>.py`` (None: the home page); no exception on the way."""
    from streamlit.testing.v1 import AppTest  # lazy: the benchmark imports this module without AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, at.exception
    return at


def metric(at, label: str) -> str:
    found = [m.value for m in at.metric if m.label == label]
    assert found, f"no metric {label!r}; have {[m.label for m in at.metric]}"
    return found[0]


def frame_with(at, column: str):
    """The first table on the page with ``column`` (AppTest does not find dataframes by key)."""
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert found, f"no table with column {column!r}"
    return found[0]
SCENARIOS = ROOT / "scenarios"

# (scenario, seed, brain override, simulated seconds)
WAREHOUSE_RUNS = (
    ("warehouse-small-event.toml", 1, "greedy"),
    ("warehouse-small-event.toml", 2, "random"),  # the random brain blocks a lot and deadlocks
    ("warehouse-tiny.toml", 1, None),
)


def record(store: Path, scenario: str, seed: int, until: float, brain: str | None = None,
           path: Path | None = None) -> dict:
    from desim.app.recording import record_run
    from desim.app.scenario import load

    p = path or SCENARIOS / scenario
    return record_run(load(p), p, store, seed=seed, until=until, brain=brain)


def partitioned_small(tmp: Path, at: float = 60.0, duration: float = 40.0) -> Path:
    """The small event scenario with its zone-1 partition moved early enough for a short run."""
    text = (SCENARIOS / "warehouse-small-event.toml").read_text()
    fault = 'at = 1200.0\nkind = "isolate"\nnodes = ["zone-1"]\nduration = 60.0\n'
    assert fault in text, "warehouse-small-event.toml's partition changed: update partitioned_small"
    text = text.replace(fault, f'at = {float(at)!r}\nkind = "isolate"\nnodes = ["zone-1"]\nduration = {float(duration)!r}\n')
    text = text.replace('name = "warehouse-small-event"', 'name = "warehouse-small-event-early-partition"', 1)
    out = tmp / "warehouse-small-event-early-partition.toml"
    out.write_text(text)
    return out


# --------------------------------------------------------------------------- training stand-in


PAYOFF = np.array([[11.0, -30.0, 0.0], [-30.0, 7.0, 6.0], [0.0, 0.0, 5.0]]) / 10  # the climbing game
AGENTS = ("robot_0", "robot_1")


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class ToyTrainer:
    """Policy-gradient on a two-agent cooperative matrix game (the climbing game).

    A genuine, tiny optimisation: each agent has softmax logits over 3 actions,
    both get the shared reward, and the logits follow REINFORCE (``baseline``: minus
    a learned value). It logs what a learner logs: ``return`` (mean batch reward),
    ``loss`` (the policy-gradient surrogate), ``entropy`` (sum over agents),
    ``value_error`` (squared error of the value estimate), and per-agent
    ``credit/<agent>``: the difference reward (the reward minus the reward had that
    agent taken the default action 2, others unchanged).
    """

    def __init__(self, algo: str, seed: int, batch: int = 64, lr: float = 2.0):
        self.algo, self.seed, self.batch, self.lr = algo, seed, batch, lr
        self.baseline = algo.endswith("baseline")
        self.rng = np.random.default_rng(seed)
        self.logits = self.rng.normal(0.0, 0.1, size=(2, 3))
        self.value = 0.0
        self.step_no = 0
        self.t0 = time.perf_counter()

    def step(self) -> dict[str, float]:
        p = _softmax(self.logits)
        a = np.stack([self.rng.choice(3, size=self.batch, p=p[i]) for i in range(2)])
        r = PAYOFF[a[0], a[1]] + self.rng.normal(0.0, 0.1, self.batch)
        adv = r - (self.value if self.baseline else 0.0)
        logp = np.log(p[0, a[0]]) + np.log(p[1, a[1]])
        out = {"return": float(r.mean()), "loss": float(-(adv * logp).mean()),
               "entropy": float(-(p * np.log(p)).sum()), "value_error": float(((r - self.value) ** 2).mean())}
        for i, name in enumerate(AGENTS):
            default = PAYOFF[2, a[1]] if i == 0 else PAYOFF[a[0], 2]
            out[f"credit/{name}"] = float((r - default).mean())
            onehot = np.eye(3)[a[i]]
            self.logits[i] += self.lr * (adv[:, None] * (onehot - p[i])).mean(axis=0)
        self.value += 0.2 * (r.mean() - self.value)
        self.step_no += 1
        return out

    def rows(self, steps: int) -> dict[str, list]:
        rows: dict[str, list] = {"step": [], "wall_s": [], "metric": [], "value": [], "algo": []}
        for _ in range(steps):
            figures = self.step()
            env_steps = self.step_no * self.batch
            wall = time.perf_counter() - self.t0
            for k, v in figures.items():
                rows["step"].append(env_steps)
                rows["wall_s"].append(wall)
                rows["metric"].append(k)
                rows["value"].append(v)
                rows["algo"].append(self.algo)
        return rows


TRAIN_CFG = {"eval_episodes": 1, "episode_steps": 64, "log_every_s": 1e-9, "checkpoint_every": 512}


def tiny_three_robots(tmp: Path) -> Path:
    """train-tiny with three robots, under its own name: a second training scenario."""
    text = (SCENARIOS / "train-tiny.toml").read_text()
    assert 'name = "train-tiny"' in text and "robots = 2" in text
    out = tmp / "train-tiny-3.toml"
    out.write_text(text.replace('name = "train-tiny"', 'name = "train-tiny-3"', 1).replace("robots = 2", "robots = 3", 1))
    return out


def real_train(store: Path, tmp: Path, scenario: Path, algo: str, seed: int, steps: int = 2048,
               stop_after: int | None = None) -> str:
    """A real ``desim train`` run (its library call); ``stop_after``: raise KeyboardInterrupt (Ctrl-C)
    from inside the training loop at that many learner updates, as the terminal would."""
    import desim.policies.train as T

    before = {r["run_id"] for r in _store(store).list_runs()}
    flush = T._CurveWriter.maybe_flush
    calls = {"n": 0}

    def interrupting(self):
        flush(self)
        calls["n"] += 1
        if stop_after is not None and calls["n"] >= stop_after:
            self.flush()
            raise KeyboardInterrupt

    T._CurveWriter.maybe_flush = interrupting
    try:
        T.train(str(scenario), algo, steps, device="cpu", seed=seed, store_path=store,
                out_dir=tmp / f"ck-{algo}-{scenario.stem}-{seed}", progress=False, train_cfg=TRAIN_CFG)
    except KeyboardInterrupt:
        assert stop_after is not None
    finally:
        T._CurveWriter.maybe_flush = flush
    (rid,) = [r["run_id"] for r in _store(store).list_runs() if r["run_id"] not in before]
    return rid


def _store(path: Path):
    from desim.store import Store

    return Store(path)


def real_training(store: Path, tmp: Path) -> dict[str, str]:
    """Five real, short training runs (see the module docstring); returns {label: run_id}."""
    tiny = SCENARIOS / "train-tiny.toml"
    return {"ippo:0": real_train(store, tmp, tiny, "ippo", 0), "ippo:1": real_train(store, tmp, tiny, "ippo", 1),
            "mappo:0": real_train(store, tmp, tiny, "mappo", 0),
            "ippo-3robots:0": real_train(store, tmp, tiny_three_robots(tmp), "ippo", 0),
            "ippo:interrupted": real_train(store, tmp, tiny, "ippo", 2, steps=8192, stop_after=3)}


def fill_store(store: Path, tmp: Path, until: float = 240.0, training: bool = True) -> dict[str, str]:
    """Real warehouse, network and training runs; returns {label: run_id}."""
    ids: dict[str, str] = {}
    for scenario, seed, brain in WAREHOUSE_RUNS:
        s = record(store, scenario, seed, until, brain)
        ids[f"{scenario}:{seed}"] = s["run_id"]
    s = record(store, "", 3, until, "greedy", path=partitioned_small(tmp))  # seed 3: the partition deadlocks a robot
    ids["partitioned"] = s["run_id"]
    s = record(store, "network-partition.toml", 1, 120.0)
    ids["network"] = s["run_id"]
    if training:
        ids.update(real_training(store, tmp))
    return ids


# --------------------------------------------------------------------------- sweeps


SWEEP = """
name = "{name}"
base = "{base}"
until = {until}
replications = {reps}
seed = {seed}
metrics = {metrics}

[grid]
{grid}
"""

# the tick-tempo tiny floor saturates: throughput grows in step with the robots up to 8, barely
# to 16 and falls at 24 (gridlock), so the knee is at 8 robots
ROBOTS_SWEEP = dict(name="tiny-robots", base="warehouse-tiny.toml", until=240.0, reps=2, seed=1,
                    grid={"warehouse.robots": [2, 4, 8, 16, 24]},
                    metrics=["throughput_per_hour", "order_latency.p99", "deadlocks"])
# two parameters: robots, and a wireless delay changed by half a millisecond (a tiny change)
GRID_SWEEP = dict(name="tiny-grid", base="warehouse-tiny-event.toml", until=120.0, reps=3, seed=1,
                  grid={"warehouse.robots": [1, 2], "links.wireless.delay.mean": [0.02, 0.0205]},
                  metrics=["throughput_per_hour", "order_latency.p50"])


def sweep_file(tmp: Path, name: str, base: str, until: float, reps: int, seed: int, grid: dict,
               metrics: list[str]) -> Path:
    import json

    f = tmp / f"{name}.toml"
    f.write_text(SWEEP.format(name=name, base=SCENARIOS / base, until=until, reps=reps, seed=seed,
                              metrics=json.dumps(metrics),
                              grid="\n".join(f'"{k}" = {json.dumps(v)}' for k, v in grid.items())))
    return f


def record_sweep(store: Path, tmp: Path, **spec) -> str:
    """A real ``desim sweep`` (one worker process) into ``store``; returns its run id."""
    from desim.app.sweep import execute, load_sweep
    from desim.app.sweep_backends import LocalPool
    from desim.store import Store

    rid, _rows = execute(load_sweep(sweep_file(tmp, **spec)), Store(store), LocalPool(1))
    return rid
