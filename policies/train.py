"""Training runs: environment, curves, checkpoints, rollback.

``train(source, algo, steps, ...)`` is what ``desim train`` calls:

1. the environment: ``source`` is a scenario (file or Scenario), simulated as
   written (its links, faults and orders included), or a dict of env kwargs;
   ``[train]`` holds :class:`~desim.policies.config.TrainConfig` fields and,
   in ``[train.<algo>]``, the learner's hyperparameters;
2. the learner, from the policy registry (``module:Class``, imported on use);
3. ``learner.train(venv, steps, log, on_update)``: every ``log`` call becomes rows
   of the store's ``train_curves`` table (appended every ``log_every_s``, so a
   live dashboard sees them), and every ``checkpoint_every`` env steps
   ``on_update`` writes a versioned checkpoint and lets the
   :class:`~policies.rollback.Gatekeeper` promote it or roll it back (rows of
   the ``promotions`` table). ``latest.pt`` is always the promoted incumbent.

Algorithms live in one file each and know nothing of the store or the CLI.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

from desim.models.warehouse.env import scenario_for
from desim.policies.checkpoint import save_checkpoint
from desim.policies.common import ConfigError, EnvInfo, device as pick_device
from desim.policies.config import TrainConfig
from desim.policies.floors import HostView, make_floors
from desim.policies.ondevice import check_supported
from desim.policies.rollback import Decision, Gatekeeper, held_out_return
from desim.policies.spec import learner_class, learner_names
from desim.policies import tables as _tables  # noqa: F401  (declares train_curves, promotions)
from desim.scenario import ScenarioBase, ScenarioError, error_of, parse, to_data
from desim.store import DEFAULT_STORE, Store

# train_curves metrics written to the store (anything else a learner logs stays in memory)
BATCHED_ALGOS = ("mappo", "ippo")  # learners with an on-device loop (policies.ondevice); the others use a HostView
BATCHED_CREDITS = ("global", "difference")  # reward allocations only batched floors compute
CURVE_METRICS = ("return", "loss", "policy_loss", "value_loss", "entropy", "value_error", "approx_kl", "clip_frac",
                 "td_error", "q_mean", "epsilon", "rollout_s", "update_s", "env_steps_per_s", "eval_return")


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


def planned_steps(requested: int, per_iteration: int) -> int:
    """The env steps a training run of ``requested`` steps actually runs: learners step whole iterations
    (``per_iteration`` env steps each), so the request is rounded up to a multiple of ``per_iteration``."""
    if requested <= 0 or per_iteration <= 0:
        raise ValueError(f"requested steps and steps per iteration must be positive, got {requested}, {per_iteration}")
    return -(-int(requested) // int(per_iteration)) * int(per_iteration)


def steps_per_iteration(learner, n_envs: int) -> int:
    """Env steps (summed over the ``n_envs`` copies) one iteration of ``learner.train`` adds to its count:
    ``n_envs * rollout`` for learners that roll out ``rollout`` steps between updates (MAPPO, IPPO, COMA),
    ``n_envs`` for those that count every joint step (VDN, QMIX). A learner may say so itself with a
    ``steps_per_iteration(n_envs)`` method."""
    own = getattr(learner, "steps_per_iteration", None)
    if callable(own):
        return int(own(n_envs))
    rollout = getattr(getattr(learner, "cfg", None), "rollout", None)
    return int(n_envs) * (int(rollout) if rollout else 1)


class _Bar:
    """A rich progress bar over the env steps training will run: steps/s, recent return, ETA (no-op when
    disabled). ``planned``, ``total`` and ``completed`` are kept either way."""

    def __init__(self, total: int, label: str, enabled: bool):
        self.planned = self.total = int(total)  # planned: the total it started with
        self.completed = 0
        self.bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            # the label (algo and scenario name) is the user's text: the task's description, printed literally
            self.bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[sps]:>7.0f} env steps/s"), TextColumn("return {task.fields[ret]}"),
                                TextColumn("{task.fields[note]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                TimeRemainingColumn(), console=Console(stderr=True, emoji=False, highlight=False), transient=False)
            self.bar.start()
            self.task = self.bar.add_task(label, total=self.total, sps=0.0, ret="-", note="")

    def update(self, **kw) -> None:
        if "total" in kw:
            self.total = int(kw["total"])
        if "completed" in kw:
            self.completed = int(kw["completed"])
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


def _resolve(source) -> tuple[ScenarioBase, str | None, str]:
    """``(scenario, its text when read from a file, file name)``."""
    if isinstance(source, dict):  # env kwargs (WarehouseParallelEnv's keyword constructor)
        return scenario_for(**source), None, "<env>"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ScenarioError(str(source), "", f"cannot read: {e}") from None
        return parse(text, str(source), path.parent), text, str(source)
    if isinstance(source, ScenarioBase):
        return source, None, "<scenario>"
    raise TypeError(f"source must be a scenario file, a Scenario or env kwargs, not {type(source).__name__}")


def train(source, algo: str, steps: int, device: str = "auto", seed: int = 0, out_dir: str | os.PathLike | None = None,
          store_path: str | os.PathLike | None = None, progress: bool = True, cfg: dict | None = None,
          train_cfg: dict | None = None, scenario_text: str | None = None, file: str | None = None) -> dict:
    """Train ``algo`` for ``steps`` env steps on ``source``; returns the run's summary.

    ``source``: a scenario file, a :class:`~desim.scenario.Scenario`, or env
    kwargs (``models.warehouse.env.WarehouseParallelEnv``'s). ``cfg`` /
    ``train_cfg`` override the scenario's ``[train.<algo>]`` / ``[train]``
    fields. ``store_path=None`` uses the default store (``runs/desim.duckdb``);
    ``out_dir=None`` writes checkpoints to ``runs/checkpoints/<run_id>``.
    Raises ValueError / ScenarioError (one line) for bad input.
    """
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    if algo not in learner_names():
        raise ValueError(f"unknown algo {algo!r} (expected one of {', '.join(learner_names())})")
    sc, text, where = _resolve(source)
    file = file or where
    text = scenario_text if scenario_text is not None else text
    if sc.warehouse is None:
        raise ScenarioError(file, "warehouse", "training needs a [warehouse] section")
    written = sc.train.model_dump(exclude_unset=True) if sc.train is not None else {}
    try:
        tc = TrainConfig.model_validate({**written, **(train_cfg or {})})
    except ValidationError as e:
        raise error_of(e, file, ("train",)) from None
    algo_cfg = {**tc.learner_table(algo), **(cfg or {})}
    cls = learner_class(algo)
    scenario_name, scenario_text = sc.name, text
    if not 0 <= seed < tc.eval_seed:
        raise ValueError(f"seed must be in [0, {tc.eval_seed}) so training seeds stay disjoint from held-out seeds")
    try:
        dev = pick_device(device)
    except RuntimeError as e:
        raise ValueError(f"device {device!r}: {e}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available on this machine (use auto or cpu)")
    # the env simulates the scenario as written (links, faults, orders and all), as plain data so
    # checkpoints and held-out evaluation rebuild exactly this env; batched floors: the floor alone
    env_kwargs = {"scenario": to_data(sc), "max_steps": tc.episode_steps, "obs_radius": tc.obs_radius}
    batched = tc.floors == "batched"
    if batched:
        env_kwargs.update(floors="batched", observations=tc.observations)
    elif tc.credit in BATCHED_CREDITS:
        raise ScenarioError(file, "train.credit", f'credit = "{tc.credit}" needs batched floors (--envs N, or [train] '
                                                  'floors = "batched"); simulated floors train on individual or shaped rewards')
    # "shaped" is the floor's individual rewards plus the shaping term (tc.shaping, checked nonzero)
    credit = "individual" if tc.credit == "shaped" else tc.credit
    if dev.type == "cpu" and tc.torch_threads > 0:
        torch.set_num_threads(tc.torch_threads)

    # reward allocation and potential-based shaping live in the env; its finished_returns stay the
    # floor's own team return (held-out evaluation builds its floors without either)
    try:
        env = make_floors(env_kwargs, tc.n_envs, seed, dev, credit=credit, shaping=tc.shaping,
                          shaping_gamma=tc.shaping_gamma, shaping_potential=tc.shaping_potential,
                          shaping_terms=tc.shaping_terms)
    except ScenarioError as e:  # what batched floors cannot simulate, named in the file's words
        raise ScenarioError(file, e.field, e.problem) from None
    # learners without an on-device loop step batched floors through a host view (numpy in and out)
    venv = HostView(env) if batched and algo not in BATCHED_ALGOS else env
    info = EnvInfo(**env.info())
    try:
        learner = cls(info, algo_cfg, dev, seed)
        if batched:
            check_supported(learner.cfg)
    except ConfigError as e:  # a bad [train.<algo>] value: one line naming it
        raise ScenarioError(file, f"train.{algo}.{e.field}", e.problem) from None

    store = Store(store_path or DEFAULT_STORE)
    config = {"algo": algo, "steps": steps, "device": str(dev), "env": env_kwargs, "train": tc.settings(),
              "learner": _plain(getattr(learner, "cfg", algo_cfg)), "file": file}
    with store.run("train", scenario=scenario_name, scenario_text=scenario_text, seed=seed, brain=algo,
                   config=config) as run:
        out = Path(out_dir) if out_dir is not None else Path("runs") / "checkpoints" / run.run_id
        curves = _CurveWriter(store, run.run_id, algo, tc.log_every_s)
        gate = Gatekeeper(lambda lr: held_out_return(lr, env_kwargs, tc.eval_episodes, tc.eval_seed, tc.eval_mode),
                          tc.margin_abs, tc.margin_frac)
        keeper = Checkpoints(out, algo, env_kwargs, tc.obs_radius, gate, run, tc.rollback,
                             meta={"scenario": scenario_name, "seed": seed})
        # learners run whole iterations: the bar counts to the steps that will run (the summary's ``steps``)
        planned = planned_steps(steps, steps_per_iteration(learner, tc.n_envs))
        bar = _Bar(planned, f"{algo} {scenario_name}", progress)
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
            bar.update(completed=min(step, bar.total), sps=step / max(time.perf_counter() - t0, 1e-9),
                       ret=f"{np.mean(recent):.2f}" if recent else "-")
            curves.maybe_flush()
            if step - state["last_ckpt"] >= tc.checkpoint_every:
                checkpoint(step)

        try:
            learner.train(venv, steps, log, on_update)
            if state["step"] != bar.total:  # a learner that ran other than planned: the bar ends where the summary does
                bar.update(total=state["step"])
            bar.update(completed=state["step"], sps=state["step"] / max(time.perf_counter() - t0, 1e-9))
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
            "promotions": [asdict(d) for d in keeper.decisions], "store": str(store.path),
        }
        run.update_summary({k: v for k, v in result.items() if k not in ("checkpoints", "promotions")},
                           promotions=len(keeper.decisions),
                           rollbacks=sum(not d.promoted for d in keeper.decisions))
    return result


def _ungated(gate, learner, version: int, step: int):
    """Rollback off: evaluate and record, but promote every candidate."""
    score = float(gate.evaluate(learner))
    d = Decision(step, version, gate.incumbent_version, score, gate.incumbent_return, 0.0, "promote",
                 "rollback disabled ([train] rollback = false)")
    gate.incumbent_version, gate.incumbent_return = version, score
    return d


def _plain(cfg) -> dict:
    return asdict(cfg) if is_dataclass(cfg) else dict(cfg or {})
