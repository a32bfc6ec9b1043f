"""Training runs: registry, environment, curves, checkpoints, rollback.

``train(source, algo, steps, ...)`` is what ``desim train`` calls:

1. the environment: ``source`` is a scenario (file or :class:`Scenario`) whose
   ``[warehouse]`` section (and ``[links.wireless]``) maps to env kwargs, or a
   dict of env kwargs; ``[train]`` holds :class:`TrainConfig` fields and, in
   ``[train.<algo>]``, the learner's hyperparameters;
2. the learner, from :data:`LEARNERS` (names to ``module:Class``, imported lazily);
3. ``learner.train(venv, steps, log, on_update)``: every ``log`` call becomes rows
   of the store's ``train_curves`` table (appended every ``log_every_s``, so a
   live dashboard sees them), and every ``checkpoint_every`` env steps
   ``on_update`` writes a versioned checkpoint and lets the
   :class:`~policies.rollback.Gatekeeper` promote it or roll it back (rows of
   the ``promotions`` table). ``latest.pt`` is always the promoted incumbent.

Algorithms live in one file each and know nothing of the store or the CLI.
"""
from __future__ import annotations

import importlib
import os
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from desim.policies import tables as _tables  # noqa: F401  (declares train_curves, promotions)

LEARNERS = {
    "ippo": "desim.policies.ippo:IPPO",
    "mappo": "desim.policies.mappo:MAPPO",
    "vdn": "desim.policies.vdn:VDN",
    "qmix": "desim.policies.qmix:QMIX",
    "coma": "desim.policies.coma:COMA",
}

# train_curves metrics written to the store (anything else a learner logs stays in memory)
CURVE_METRICS = ("return", "loss", "policy_loss", "value_loss", "entropy", "value_error", "approx_kl", "clip_frac",
                 "td_error", "q_mean", "epsilon", "rollout_s", "update_s", "env_steps_per_s", "eval_return")


@dataclass
class TrainConfig:
    episode_steps: int = 500  # decisions per training episode (rware's default episode length)
    n_envs: int = 8  # env copies stepped together; the policy sees one batch per step
    checkpoint_every: int = 25_000  # env steps between candidate checkpoints
    eval_episodes: int = 4  # held-out episodes per candidate (deterministic actions)
    eval_seed: int = 1_000_000  # held-out env seeds are eval_seed*1000+k; training seeds are seed*1000+k, seed < eval_seed
    eval_mode: str = "sample"  # "sample": the policy as deployed (seeded draws); "argmax": its most probable actions
    margin_abs: float = 1.0  # a candidate may trail the incumbent by this much return ...
    margin_frac: float = 0.1  # ... plus this fraction of the incumbent's return, and still be promoted
    rollback: bool = True  # False: every candidate is promoted (no gate)
    log_every_s: float = 2.0  # seconds between appends of curve rows to the store
    obs_radius: int = 1  # observation window radius (obs_dim = 14 + 5 (2r+1)^2)
    torch_threads: int = 1  # CPU threads for torch (small networks gain nothing from more; 0: torch's default)
    shaping: float = 0.0  # potential-based reward shaping weight w: r + gamma*w*o'[f] - w*o[f] (0: off, rware's reward)
    shaping_potential: str = "carrying"  # "carrying" (lifting a requested shelf pays at once) or "distance" (models/warehouse/env.py)
    shaping_gamma: float = 0.99  # the shaping's discount; keep it equal to the learner's gamma (policy invariance)


def learner_class(algo: str):
    """The learner class registered as ``algo``; ValueError (one line) if unknown or not importable."""
    if algo not in LEARNERS:
        raise ValueError(f"unknown algo {algo!r} (expected one of {', '.join(LEARNERS)})")
    module, _, cls = LEARNERS[algo].partition(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"algo {algo!r} is not available ({LEARNERS[algo]}: {e})") from None


# -- scenario -> env kwargs and configs ----------------------------------------
def env_kwargs_from(sc, file: str = "<scenario>") -> tuple[dict, list[str]]:
    """Env kwargs for a scenario's ``[warehouse]`` (and wireless link); and the
    scenario features the env adapter does not model (trained without them)."""
    from desim.scenario import ScenarioError
    from desim.models.warehouse.scenario import DurationsCfg, parse_section

    if sc.warehouse is None:
        raise ScenarioError(file, "warehouse", "training needs a [warehouse] section")
    w = parse_section(sc, file)
    if w.map is not None:
        raise ScenarioError(file, "warehouse.map", "training needs a named floor size (the env adapter takes no map file)")
    kw: dict[str, Any] = {"size": w.size, "robots": w.robots, "tempo": w.tempo, "reward": w.reward, "zones": w.zones,
                          "request_queue": w.request_queue, "tick_seconds": w.tick_seconds}
    ignored = []
    if w.tempo == "event" and w.durations != DurationsCfg():
        kw["durations"] = w.durations.model_dump()
    wl = sc.links.wireless
    if wl is not None:
        kw["latency"], kw["jitter"] = wl.delay.mean, wl.delay.jitter
        if wl.delay.dist not in ("constant", "lognormal") or wl.delay.correlation:
            ignored.append(f"links.wireless.delay (trained with lognormal mean {wl.delay.mean}, jitter {wl.delay.jitter})")
        if wl.loss.model == "bernoulli":
            kw["loss"] = wl.loss.p
        elif wl.loss.model != "none":
            ignored.append(f"links.wireless.loss ({wl.loss.model})")
    if w.orders is not None:
        ignored.append("warehouse.orders (trained with the rware request queue)")
    if w.column_height != 8:
        ignored.append("warehouse.column_height")
    if sc.faults:
        ignored.append("faults")
    return kw, ignored


def configs_from(section: dict | None, algo: str, file: str = "<scenario>") -> tuple[TrainConfig, dict]:
    """``[train]`` -> (TrainConfig, the learner's config from ``[train.<algo>]``)."""
    from desim.scenario import ScenarioError

    section = dict(section or {})
    known = {f.name for f in fields(TrainConfig)}
    algo_cfg = section.pop(algo, None) or {}
    for name in LEARNERS:
        section.pop(name, None)  # other algorithms' tables: not ours to check now
    for key in section:
        if key not in known:
            raise ScenarioError(file, f"train.{key}", f"unknown field (known: {', '.join(sorted(known))}, or a [train.<algo>] table)")
    try:
        tc = TrainConfig(**section)
    except TypeError as e:
        raise ScenarioError(file, "train", str(e)) from None
    for f in fields(TrainConfig):
        v = getattr(tc, f.name)
        if f.type in ("int", "float") and not isinstance(v, (int, float)) or isinstance(v, bool) and f.type != "bool":
            raise ScenarioError(file, f"train.{f.name}", f"must be a number, got {v!r}")
    for name in ("episode_steps", "n_envs", "checkpoint_every", "eval_episodes"):
        if getattr(tc, name) < 1:
            raise ScenarioError(file, f"train.{name}", "must be at least 1")
    if tc.eval_mode not in ("sample", "argmax"):
        raise ScenarioError(file, "train.eval_mode", f"must be 'sample' or 'argmax', got {tc.eval_mode!r}")
    if not isinstance(algo_cfg, dict):
        raise ScenarioError(file, f"train.{algo}", "must be a table of hyperparameters")
    return tc, dict(algo_cfg)


# -- the run -----------------------------------------------------------------------
class _CurveWriter:
    """Buffers ``log`` calls as long-format rows; appends a part to the store every few seconds."""

    def __init__(self, store, run_id: str | None, algo: str, every_s: float):
        self.store, self.run_id, self.algo, self.every_s = store, run_id, algo, every_s
        self.rows: dict[str, list] = {"step": [], "wall_s": [], "metric": [], "value": [], "algo": []}
        self.t0 = time.perf_counter()
        self.last_flush = self.t0

    def add(self, step: int, metrics: dict) -> None:
        wall = time.perf_counter() - self.t0
        for k, v in metrics.items():
            if (k in CURVE_METRICS or k.startswith("credit/")) and v is not None and np.isfinite(v):
                self.rows["step"].append(int(step))
                self.rows["wall_s"].append(wall)
                self.rows["metric"].append(k)
                self.rows["value"].append(float(v))
                self.rows["algo"].append(self.algo)

    def maybe_flush(self) -> None:
        if time.perf_counter() - self.last_flush >= self.every_s:
            self.flush()

    def flush(self) -> None:
        self.last_flush = time.perf_counter()
        if self.store is None or not self.rows["step"]:
            return
        self.store.append(self.run_id, "train_curves", self.rows)
        self.rows = {k: [] for k in self.rows}


class _Bar:
    """A rich progress bar with env steps/s and the recent return (no-op when disabled)."""

    def __init__(self, total: int, label: str, enabled: bool):
        self.bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[sps]:>7.0f} steps/s"), TextColumn("return {task.fields[ret]}"),
                                TextColumn("{task.fields[note]}"), TimeElapsedColumn(),
                                console=Console(stderr=True), transient=False)
            self.bar.start()
            self.task = self.bar.add_task(label, total=total, sps=0.0, ret="-", note="")

    def update(self, **kw) -> None:
        if self.bar is not None:
            self.bar.update(self.task, **kw)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class Checkpoints:
    """Writes a versioned checkpoint per candidate and records the gate's decision.

    ``keeper(learner, step)`` saves ``<algo>-vNNNN.pt``, asks the
    :class:`~policies.rollback.Gatekeeper` (which may roll the learner back),
    appends the decision to the run's ``promotions`` table and, when promoted,
    copies the file to ``latest.pt`` (atomically: a reader never sees a
    half-written incumbent).
    """

    def __init__(self, out_dir: str | os.PathLike, algo: str, env_kwargs: dict, obs_radius: int, gate, run=None,
                 rollback: bool = True, meta: dict | None = None):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.algo, self.env_kwargs, self.obs_radius = algo, env_kwargs, obs_radius
        self.gate, self.run, self.rollback = gate, run, rollback
        self.meta = dict(meta or {})
        self.version = 0
        self.decisions: list = []
        self.paths: list[str] = []

    @property
    def latest(self) -> Path:
        return self.out / "latest.pt"

    def __call__(self, learner, step: int):
        from desim.policies.checkpoint import save_checkpoint

        self.version += 1
        path = self.out / f"{self.algo}-v{self.version:04d}.pt"
        save_checkpoint(path, learner, algo=self.algo, env_kwargs=self.env_kwargs, obs_radius=self.obs_radius,
                        version=self.version, env_steps=step, **self.meta)
        self.paths.append(str(path))
        if self.rollback:
            d = self.gate.consider(learner, self.version, step)
        else:
            d = _ungated(self.gate, learner, self.version, step)
        self.decisions.append(d)
        if self.run is not None:
            self.run.append("promotions", {**asdict(d), "checkpoint": str(path)})
        if d.promoted:
            tmp = self.out / ".latest.pt.tmp"
            shutil.copyfile(path, tmp)
            os.replace(tmp, self.latest)
        return d


def _resolve(source) -> tuple[dict, list[str], str, str | None, dict | None, str]:
    """``(env_kwargs, ignored, scenario name, scenario text, [train] section, file)``."""
    from desim.app.scenario import Scenario, load

    if isinstance(source, dict):
        return dict(source), [], f"env-{source.get('size', 'tiny')}-{source.get('robots', 2)}ag", None, None, "<env>"
    text = None
    if isinstance(source, (str, os.PathLike)):
        file = str(source)
        sc = load(source)
        text = Path(source).read_text()
    elif isinstance(source, Scenario):
        file, sc = "<scenario>", source
    else:
        raise TypeError(f"source must be a scenario file, a Scenario or env kwargs, not {type(source).__name__}")
    kw, ignored = env_kwargs_from(sc, file)
    return kw, ignored, sc.name, text, sc.train, file


def train(source, algo: str, steps: int, device: str = "auto", seed: int = 0, out_dir: str | os.PathLike | None = None,
          store_path: str | os.PathLike | None = None, progress: bool = True, cfg: dict | None = None,
          train_cfg: dict | None = None) -> dict:
    """Train ``algo`` for ``steps`` env steps on ``source``; returns the run's summary.

    ``source``: a scenario file, a :class:`~desim.scenario.Scenario`, or env
    kwargs (``models.warehouse.env.WarehouseParallelEnv``'s). ``cfg`` /
    ``train_cfg`` override the scenario's ``[train.<algo>]`` / ``[train]``
    fields. ``store_path=None`` uses the default store (``runs/desim.duckdb``);
    ``out_dir=None`` writes checkpoints to ``runs/checkpoints/<run_id>``.
    Raises ValueError / ScenarioError (one line) for bad input.
    """
    from desim.store import DEFAULT_STORE, Store
    from desim.models.warehouse.env import VectorWarehouseEnv
    from desim.models.warehouse.features import obs_dim
    from desim.scenario import ScenarioError
    from desim.policies.common import ConfigError, EnvInfo, device as pick_device
    from desim.policies.rollback import Gatekeeper, held_out_return

    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    if algo not in LEARNERS:
        raise ValueError(f"unknown algo {algo!r} (expected one of {', '.join(LEARNERS)})")
    env_kwargs, ignored, scenario_name, scenario_text, section, file = _resolve(source)
    tc, algo_cfg = configs_from({**(section or {}), **(train_cfg or {})}, algo, file)
    cls = learner_class(algo)
    algo_cfg.update(cfg or {})
    if not 0 <= seed < tc.eval_seed:
        raise ValueError(f"seed must be in [0, {tc.eval_seed}) so training seeds stay disjoint from held-out seeds")
    try:
        dev = pick_device(device)
    except RuntimeError as e:
        raise ValueError(f"device {device!r}: {e}") from None
    if dev.type == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available on this machine (use auto or cpu)")
    env_kwargs = {**env_kwargs, "max_steps": tc.episode_steps, "obs_radius": tc.obs_radius}
    if dev.type == "cpu" and tc.torch_threads > 0:
        import torch

        torch.set_num_threads(tc.torch_threads)

    # potential-based shaping lives in the env; its finished_returns stay unshaped
    env = VectorWarehouseEnv(tc.n_envs, seed=seed, shaping=tc.shaping, shaping_gamma=tc.shaping_gamma,
                             shaping_potential=tc.shaping_potential, **env_kwargs)
    venv = env
    n = len(env.agents)
    info = EnvInfo(n_agents=n, obs_dim=obs_dim(tc.obs_radius), state_dim=obs_dim(tc.obs_radius) * n, n_actions=5)
    try:
        learner = cls(info, algo_cfg, dev, seed)
    except ConfigError as e:  # a bad [train.<algo>] value: one line naming it
        raise ScenarioError(file, f"train.{algo}.{e.field}", e.problem) from None

    store = Store(store_path or DEFAULT_STORE)
    config = {"algo": algo, "steps": steps, "device": str(dev), "env": env_kwargs, "train": asdict(tc),
              "learner": _plain(getattr(learner, "cfg", algo_cfg)), "ignored": ignored, "file": file}
    with store.run("train", scenario=scenario_name, scenario_text=scenario_text, seed=seed, brain=algo,
                   config=config) as run:
        out = Path(out_dir) if out_dir is not None else Path("runs") / "checkpoints" / run.run_id
        curves = _CurveWriter(store, run.run_id, algo, tc.log_every_s)
        gate = Gatekeeper(lambda lr: held_out_return(lr, env_kwargs, tc.eval_episodes, tc.eval_seed, tc.eval_mode),
                          tc.margin_abs, tc.margin_frac)
        keeper = Checkpoints(out, algo, env_kwargs, tc.obs_radius, gate, run, tc.rollback,
                             meta={"scenario": scenario_name, "seed": seed})
        bar = _Bar(steps, f"{algo} {scenario_name}", progress)
        state = {"step": 0, "last_ckpt": 0, "returns": [], "rollout_s": 0.0, "update_s": 0.0, "seen": 0}
        t0 = time.perf_counter()

        def log(step: int, metrics: dict) -> None:
            state["step"] = step
            state["rollout_s"] += metrics.get("rollout_s", 0.0)
            state["update_s"] += metrics.get("update_s", 0.0)
            metrics = dict(metrics)
            metrics.pop("return", None)  # the env's own (unshaped) episode returns, whatever the learner saw
            finished = env.finished_returns[state["seen"]:]
            state["seen"] = len(env.finished_returns)
            if finished:
                metrics["return"] = float(np.mean(finished))
                state["returns"].append(metrics["return"])
            metrics = {**metrics, "env_steps_per_s": step / max(time.perf_counter() - t0, 1e-9)}
            curves.add(step, metrics)

        def checkpoint(step: int) -> None:
            d = keeper(learner, step)
            curves.add(step, {"eval_return": d.candidate_return})
            bar.update(note=f"v{d.candidate_version} {d.decision}")
            state["last_ckpt"] = step

        def on_update(step: int) -> None:
            recent = state["returns"][-5:]
            bar.update(completed=min(step, steps), sps=step / max(time.perf_counter() - t0, 1e-9),
                       ret=f"{np.mean(recent):.2f}" if recent else "-")
            curves.maybe_flush()
            if step - state["last_ckpt"] >= tc.checkpoint_every:
                checkpoint(step)

        try:
            learner.train(venv, steps, log, on_update)
            if state["step"] > state["last_ckpt"] or keeper.version == 0:
                checkpoint(state["step"])
        finally:
            bar.close()
            curves.flush()
        wall = time.perf_counter() - t0
        inc = gate.incumbent_version
        result = {
            "run_id": run.run_id, "algo": algo, "scenario": scenario_name, "seed": seed, "device": str(dev),
            "steps": state["step"], "requested_steps": steps, "wall_s": round(wall, 3),
            "env_steps_per_s": round(state["step"] / wall, 1) if wall > 0 else None,
            "rollout_s": round(state["rollout_s"], 3), "update_s": round(state["update_s"], 3),
            "final_return": float(np.mean(state["returns"][-5:])) if state["returns"] else None,
            "incumbent_version": inc, "incumbent_return": gate.incumbent_return,
            "checkpoint": str(keeper.latest), "checkpoints": keeper.paths, "out_dir": str(out),
            "promotions": [asdict(d) for d in keeper.decisions], "ignored": ignored, "store": str(store.path),
        }
        run.update_summary({k: v for k, v in result.items() if k not in ("checkpoints", "promotions")},
                           promotions=len(keeper.decisions),
                           rollbacks=sum(not d.promoted for d in keeper.decisions))
    return result


def _ungated(gate, learner, version: int, step: int):
    """Rollback off: evaluate and record, but promote every candidate."""
    from desim.policies.rollback import Decision

    score = float(gate.evaluate(learner))
    d = Decision(step, version, gate.incumbent_version, score, gate.incumbent_return, 0.0, "promote",
                 "rollback disabled ([train] rollback = false)")
    gate.incumbent_version, gate.incumbent_return = version, score
    return d


def _plain(cfg) -> dict:
    from dataclasses import is_dataclass

    return asdict(cfg) if is_dataclass(cfg) else dict(cfg or {})
