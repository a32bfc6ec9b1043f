"""Shared by the dashboard tests (no tests here): fill a store with real runs.

``fill_store`` records real, short warehouse and network runs with
:func:`desim.app.recording.record_run` and a few small training runs from
:func:`toy_training`.

TODO: ``toy_training`` stands in for ``desim train`` in the shared fixtures: the
command was being built alongside the dashboard, and a real run costs ~6 s each
on two cores, too slow for the 4-6 seeded runs the bands need. Once ``desim
train`` is settled, switch these fixtures to short real ``desim train`` runs (a
few seeds of two learners) and drop the stand-in.
``test_dashboard.py::test_convergence_reads_a_real_desim_train_run`` already
checks the page against one real run.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
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


def toy_training(store: Path, algo: str, seed: int, steps: int = 80, chunk: int = 20) -> str:
    """A complete 'train' run of :class:`ToyTrainer`; returns its run_id."""
    from desim.store import Store

    tr = ToyTrainer(algo, seed)
    with Store(store).run("train", scenario="toy-climbing-game", seed=seed, brain=algo,
                          config={"algo": algo, "steps": steps, "batch": tr.batch, "stand_in": True}) as h:
        for _ in range(0, steps, chunk):
            rows = tr.rows(chunk)
            h.append("train_curves", rows)
        h.summary.update(steps=tr.step_no, env_steps=tr.step_no * tr.batch,
                         final_return=rows["value"][rows["metric"].index("return", len(rows["metric"]) - 8)])
    return h.run_id


def fill_store(store: Path, tmp: Path, until: float = 240.0, train_seeds: int = 3) -> dict[str, str]:
    """Real warehouse and network runs plus training stand-ins; returns {label: run_id}."""
    ids: dict[str, str] = {}
    for scenario, seed, brain in WAREHOUSE_RUNS:
        s = record(store, scenario, seed, until, brain)
        ids[f"{scenario}:{seed}"] = s["run_id"]
    s = record(store, "", 3, until, "greedy", path=partitioned_small(tmp))  # seed 3: the partition deadlocks a robot
    ids["partitioned"] = s["run_id"]
    s = record(store, "network-partition.toml", 1, 120.0)
    ids["network"] = s["run_id"]
    for algo in ("reinforce", "reinforce_baseline"):
        for seed in range(train_seeds):
            ids[f"{algo}:{seed}"] = toy_training(store, algo, seed)
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
