"""What-if runs: edit a base scenario, run it in the background, compare it with a baseline.

Nothing here imports Streamlit: the page (``views/whatif.py``) calls
:func:`read_base`, :func:`defaults`, :func:`describe` and :func:`start_job`, then
polls the returned :class:`Job` from a fragment.

A what-if is the base :class:`~desim.scenario.Scenario` edited with
``model_copy(update=...)`` (:func:`replace` sets one field by its dotted path,
copying each section on the way) and validated again (:func:`build_scenario`), so
a bad value is one ``ScenarioError`` line naming the field. The page's knobs are
the scenario's own quantities; :data:`KNOBS` maps each flat keyword to its path.

A job runs in a daemon thread of the dashboard process and records its runs
through :func:`desim.app.recording.record_run` (so they land in the store like
any ``desim run``). Both arms run ``replications`` times with the seeds
``seed .. seed + replications - 1`` (common random numbers: replication ``r`` of
the baseline and of the what-if draw from the same seed, so their difference is
the change's effect, not noise; :func:`desim.analysis.paired_diff_ci` pairs them):

1. the baseline: the base scenario file unchanged, same seeds and length; an
   identical completed run already in the store is reused instead, per seed;
2. the variant: the edited scenario, written as TOML (tomli-w) next to the store
   (``<store dir>/whatif/<name>-<digest>.toml``) so the run's ``config.path``
   stays valid. The file's header comment says what changed, in words and as a
   ``# whatif = {...}`` JSON line; the run stores that text as its
   ``scenario_text``, and :func:`recorded_changes` reads the changes back.

A what-if that changes nothing (the edited scenario equals the base) runs
nothing: its job finishes at once with status ``unchanged``.
:func:`window_warnings` says when a run length leaves out the scenario's order
peaks or fault windows; :func:`checkpoint_brains` lists trained checkpoints to
offer as brains (``checkpoint:PATH``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import threading
import time
import traceback
import typing
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel

from desim.app.recording import record_run
from desim.app.runner import prepare
from desim.app.scenario import load
from desim.scenario import ScenarioBase, parse, to_data, validate
from desim.store import Store

__all__ = [
    "BRAINS",
    "checkpoint_brains",
    "default_until",
    "KNOBS",
    "Partition",
    "build_scenario",
    "defaults",
    "describe",
    "edit",
    "find_baseline",
    "Job",
    "read_base",
    "recorded_changes",
    "replace",
    "start_job",
    "get_job",
    "unchanged",
    "variant_text",
    "window_warnings",
]

BRAINS = ("random", "greedy", "epsilon_greedy")

KNOBS = {
    "robots": "warehouse.robots",
    "order_rate": "warehouse.orders.rate_per_hour",
    "brain": "warehouse.brain",
    "delay_mean": "links.wireless.delay.mean",
    "delay_jitter": "links.wireless.delay.jitter",
}
"""The what-if keywords that set one scenario field each (``loss`` and ``partition`` set several)."""

WHATIF_FILE = "<what-if>"
CHECKPOINT = "checkpoint:"


@dataclass(frozen=True)
class Partition:
    """Cut zone ``zone``'s controller off the network from ``start`` for ``duration`` seconds."""

    start: float
    duration: float
    zone: int


# ----------------------------------------------------------------------- editing a scenario


def _section_type(model: BaseModel, name: str) -> type[BaseModel]:
    """The section class field ``name`` of ``model`` holds (through Optional and list)."""
    todo = [type(model).model_fields[name].annotation]
    while todo:
        t = todo.pop()
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
        todo.extend(typing.get_args(t))
    raise TypeError(f"{type(model).__name__}.{name} holds no section")


def replace(model: BaseModel, path: str, value: Any) -> BaseModel:
    """A copy of ``model`` with the field at the dotted ``path`` (``"links.wireless.delay.mean"``)
    set to ``value``: each section on the way is copied with ``model_copy(update=...)``, an absent
    (None) one is created empty. Nothing is validated here: :func:`build_scenario` validates the result."""
    head, _, rest = path.partition(".")
    if head not in type(model).model_fields:
        raise ValueError(f"{type(model).__name__} has no field {head!r} (in {path!r})")
    if not rest:
        return model.model_copy(update={head: value})
    inner = getattr(model, head)
    if inner is None:
        inner = _section_type(model, head).model_construct()
    return model.model_copy(update={head: replace(inner, rest, value)})


def edit(model: BaseModel, updates: dict[str, Any]) -> BaseModel:
    """:func:`replace` for each ``{dotted path: value}``, in order."""
    for path, value in updates.items():
        model = replace(model, path, value)
    return model


def read_base(path: str | Path) -> ScenarioBase:
    """A base scenario file, parsed and validated (paths in it resolved against its folder)."""
    p = Path(path)
    return parse(p.read_text(), str(p), p.parent)


def _partition_of(sc: ScenarioBase) -> Partition | None:
    for f in sc.faults:
        m = [re.fullmatch(r"zone-(\d+)", n) for n in f.nodes]
        if f.kind == "isolate" and len(m) == 1 and m[0] and f.duration:
            return Partition(float(f.at), float(f.duration), int(m[0].group(1)))
    return None


def defaults(base: ScenarioBase) -> dict[str, Any]:
    """The knobs' values in ``base``: what the page's widgets start at, and what
    :func:`build_scenario` leaves alone. ``loss`` is the wireless hop's long-run loss rate."""
    w = base.warehouse
    wl = base.links.wireless or base.links.default
    return {
        "robots": w.robots if w else 0,
        "zones": w.zones if w else base.topology.zones,
        "order_rate": float(w.orders.rate_per_hour) if w and w.orders else 0.0,
        "brain": w.brain if w else "",
        "delay_mean": float(wl.delay.mean),
        "delay_jitter": float(wl.delay.jitter),
        "loss": float(wl.loss.to_model().rate),
        "partition": _partition_of(base),
        "faults": len(base.faults),
    }


def _loss(old, loss: float):
    """The wireless loss section for a long-run loss rate ``loss`` (see :func:`build_scenario`)."""
    if loss > 0 and old.model == "gilbert_elliott" and old.loss_good == 0 and old.loss_bad == 1:
        return old.model_copy(update={"p": min(1.0, loss * old.r / (1 - loss))})
    if loss > 0:
        return type(old).model_construct(model="bernoulli", p=float(loss))
    return type(old).model_construct(model="none")


def build_scenario(base: ScenarioBase, *, robots: int | None = None, order_rate: float | None = None,
                   delay_mean: float | None = None, delay_jitter: float | None = None, loss: float | None = None,
                   partition: Partition | str | None = None, brain: str | None = None,
                   name: str | None = None, file: str = WHATIF_FILE) -> ScenarioBase:
    """``base`` with the given knobs changed (None: as in base), validated and wiring-checked.

    - ``robots``: ``warehouse.robots`` (at least ``warehouse.zones``)
    - ``order_rate``: orders per hour, ``warehouse.orders.rate_per_hour``
    - ``brain``: ``warehouse.brain``, one of :data:`BRAINS` or ``checkpoint:PATH`` (a trained
      policy: the file must exist; see :func:`checkpoint_brains`)
    - ``delay_mean`` / ``delay_jitter`` (seconds): the robot <-> controller hop,
      ``links.wireless.delay.mean`` / ``.jitter`` (``links.wireless`` starts as a copy of
      ``links.default`` when the base has none; a delay whose ``dist`` the base left unset
      becomes lognormal)
    - ``loss``: long-run loss fraction on that hop; a Gilbert-Elliott model keeps its
      burst length (``r``) and gets ``p = loss * r / (1 - loss)``; otherwise Bernoulli
    - ``partition``: a :class:`Partition` replaces the base's faults with one isolate
      of ``zone-<zone>``; ``"none"`` removes every fault
    - ``name``: the scenario's name (default: the base's, with ``-whatif``); its
      description says what changed (:func:`describe`)

    A bad value raises ValueError (a :class:`~desim.scenario.ScenarioError` when the
    scenario rejects it), one line naming the field.
    """
    changes = {k: v for k, v in dict(robots=robots, order_rate=order_rate, brain=brain, delay_mean=delay_mean,
                                     delay_jitter=delay_jitter, loss=loss, partition=partition).items()
               if v is not None}
    w = base.warehouse
    if w is None and any(k in changes for k in ("robots", "order_rate", "brain")):
        raise ValueError("the base scenario has no [warehouse] section")
    if brain is not None and brain not in BRAINS and not str(brain).startswith(CHECKPOINT):
        raise ValueError(f"brain must be one of {BRAINS} or {CHECKPOINT}PATH, not {brain!r}")
    if loss is not None and not 0 <= loss < 1:
        raise ValueError(f"loss must be in [0, 1), not {loss!r}")
    updates: dict[str, Any] = {KNOBS[k]: v for k, v in changes.items() if k in KNOBS}
    touches_wireless = any(k in changes for k in ("delay_mean", "delay_jitter", "loss"))
    wireless = base.links.wireless
    if touches_wireless and wireless is None:
        wireless = base.links.default
        updates = {"links.wireless": wireless, **updates}
    if ("delay_mean" in changes or "delay_jitter" in changes) and "dist" not in wireless.delay.model_fields_set:
        updates["links.wireless.delay.dist"] = "lognormal"
    if loss is not None:
        updates["links.wireless.loss"] = _loss(wireless.loss, float(loss))
    if isinstance(partition, Partition):
        zones = w.zones if w is not None else base.topology.zones
        if not 0 <= partition.zone < zones:
            raise ValueError(f"partition zone {partition.zone} does not exist (zones 0..{zones - 1})")
        fault = _section_type(base, "faults").model_construct(
            at=float(partition.start), kind="isolate", nodes=[f"zone-{partition.zone}"],
            duration=float(partition.duration))
        updates["faults"] = [fault]
    elif partition == "none":
        updates["faults"] = []
    elif partition is not None:
        raise ValueError(f"partition must be a Partition or 'none', not {partition!r}")
    updates["name"] = name or f"{base.name}-whatif"
    updates["description"] = f"what-if on {base.name}: {describe(changes) or 'no changes'}"
    new = validate(to_data(edit(base, updates)), file)
    prepare(new, file)  # the wiring (graph, faults' nodes, floor) checks out too
    return new


def describe(changes: dict) -> str:
    """:func:`build_scenario` keywords in words, for the page."""
    out = []
    for k, v in changes.items():
        if k in ("delay_mean", "delay_jitter"):
            out.append(f"{k.replace('_', ' ')} = {v * 1e3:g} ms")
        elif k == "loss":
            out.append(f"loss = {v * 100:g} %")
        elif k == "order_rate":
            out.append(f"orders = {v:g}/h")
        elif k == "partition":
            out.append("no faults" if v == "none" else
                       f"zone-{v.zone} cut off at {v.start:g} s for {v.duration:g} s")
        else:
            out.append(f"{k} = {v}")
    return ", ".join(out)


# ----------------------------------------------------------------------- the variant file


_HEADER = "# whatif = "


def _changes_json(changes: dict) -> str:
    return json.dumps({k: dataclasses.asdict(v) if isinstance(v, Partition) else v for k, v in changes.items()},
                      sort_keys=True)


def variant_text(sc: ScenarioBase, changes: dict, base_path: str | Path | None = None) -> str:
    """The what-if scenario as a TOML file (tomli-w), its header comment saying what changed."""
    on = f"{Path(base_path).name}" if base_path is not None else sc.name
    return (f"# written by the desim dashboard's what-if page\n"
            f"# what-if on {on}: {describe(changes) or 'no changes'}\n"
            f"{_HEADER}{_changes_json(changes)}\n\n" + tomli_w.dumps(to_data(sc)))


def recorded_changes(scenario_text: str | None) -> dict | None:
    """The :func:`build_scenario` keywords a what-if run's stored scenario text was built with
    (from its ``# whatif = {...}`` header line); None for a scenario not written by this page."""
    for line in (scenario_text or "").splitlines():
        if line.startswith(_HEADER):
            data = json.loads(line[len(_HEADER):])
            if isinstance(data.get("partition"), dict):
                data["partition"] = Partition(**data["partition"])
            return data
        if line.strip() and not line.startswith("#"):
            break
    return None


def _variant_file(store_path: Path, text: str, name: str) -> Path:
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    out = store_path.resolve().parent / "whatif" / f"{name}-{digest}.toml"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists():
        tmp = out.with_suffix(f".tmp{uuid.uuid4().hex[:6]}")
        tmp.write_text(text)
        tmp.replace(out)
    return out


# ----------------------------------------------------------------------- what a run covers


def _same_scenario(a: ScenarioBase, b: ScenarioBase) -> bool:
    keep = lambda sc: {k: v for k, v in to_data(sc).items() if k not in ("name", "description")}  # noqa: E731
    return keep(a) == keep(b)


def unchanged(base: ScenarioBase, changes: dict) -> bool:
    """Whether the what-if ``changes`` leave ``base`` as it is (then there is nothing to simulate:
    the what-if would be its own baseline). A bad change raises ValueError, as in :func:`build_scenario`."""
    return not changes or _same_scenario(build_scenario(base, **changes), base)


def _windows(base: ScenarioBase, changes: dict) -> list[tuple[str, float, float | None]]:
    """(what, start, end or None for 'to the end') of the order peaks and the faults a what-if runs with."""
    out: list[tuple[str, float, float | None]] = []
    w = base.warehouse
    for p in (w.orders.peaks if w is not None and w.orders is not None else []):
        out.append((f"the order peak at {p.factor:g}x the rate", float(p.at), float(p.at + p.duration)))
    part = changes.get("partition")
    if isinstance(part, Partition):
        out.append((f"the partition of zone-{part.zone}", part.start, part.start + part.duration))
    elif part != "none":
        for f in base.faults:
            what = f"the {f.kind} fault" + (f" on {', '.join(f.nodes)}" if f.nodes else "")
            if f.kind == "isolate" and len(f.nodes) == 1 and re.fullmatch(r"zone-\d+", f.nodes[0]):
                what = f"the partition of {f.nodes[0]}"
            out.append((what, float(f.at), None if f.duration is None else float(f.at + f.duration)))
    return out


def window_warnings(base: ScenarioBase, changes: dict, until: float) -> list[str]:
    """One line per order peak or fault window (``[at, at + duration]``) that a run of ``until``
    simulated seconds leaves out, wholly (it starts at or after ``until``: it will not happen) or
    in part (it is still on at ``until``)."""
    out = []
    for what, start, end in _windows(base, changes):
        span = f"{start:g}–{end:g} s" if end is not None else f"from {start:g} s"
        if start >= until:
            out.append(f"{what[0].upper()}{what[1:]} ({span}) starts after the {until:g} simulated seconds: "
                       "it will not happen. Simulate longer or move it earlier.")
        elif end is not None and end > until:
            out.append(f"The run ends at {until:g} s, during {what} ({span}): only part of it is simulated.")
    return out


def default_until(base: ScenarioBase, changes: dict | None = None, margin: float = 120.0) -> float:
    """A run length that covers every order peak and fault window (and ``margin`` seconds of their
    aftermath), rounded up to 5 minutes, at least 10, at most the base scenario's own length."""
    ends = [end if end is not None else start for _, start, end in _windows(base, changes or {})]
    need = math.ceil((max(ends, default=0.0) + margin) / 300.0) * 300.0
    return float(min(float(base.until), max(600.0, need)))


# ----------------------------------------------------------------------- trained brains


def checkpoint_brains(store_path: str | Path, runs: list[dict] | None = None, *,
                      roots: list[str | Path] | None = None, limit: int = 50) -> list[str]:
    """Trained checkpoints to offer as brains, as ``checkpoint:PATH`` specs (absolute paths, files
    that exist, newest first): ``*.pt`` files under the store's folder ``checkpoints/`` and under
    ``runs/checkpoints/`` (where ``desim train`` writes by default), and the checkpoints training
    runs in the store recorded (their summary's ``checkpoint`` and the ``*.pt`` in its ``out_dir``)."""
    if roots is None:
        roots = [Path(store_path).resolve().parent / "checkpoints", Path("runs") / "checkpoints"]
    found: set[Path] = set()
    for root in map(Path, roots):
        if root.is_dir():
            found.update(p.resolve() for p in root.rglob("*.pt") if p.is_file())
    for r in runs or []:
        if r.get("kind") != "train":
            continue
        s = r.get("summary") or {}
        if s.get("checkpoint") and Path(s["checkpoint"]).is_file():
            found.add(Path(s["checkpoint"]).resolve())
        if s.get("out_dir") and Path(s["out_dir"]).is_dir():
            found.update(p.resolve() for p in Path(s["out_dir"]).glob("*.pt") if p.is_file())

    def newest(p: Path) -> tuple:
        try:
            return (-p.stat().st_mtime, str(p))
        except OSError:
            return (0.0, str(p))

    return [f"{CHECKPOINT}{p}" for p in sorted(found, key=newest)[:limit]]


# ----------------------------------------------------------------------- jobs


def _same_config(run: dict, until: float) -> bool:
    cfg = run.get("config") or {}
    return not cfg.get("brain") and cfg.get("until") is not None and math.isclose(float(cfg["until"]), until)


def find_baseline(store, base_path: str | Path, seed: int, until: float) -> dict | None:
    """A completed run of the unchanged base scenario file (same text, no brain override) with this
    seed and length, if any."""
    text = Path(base_path).read_text()
    name = parse(text, str(base_path), Path(base_path).parent).name
    for r in store.list_runs(kind="run", status="complete"):
        if (r.get("scenario") == name and r.get("seed") == seed
                and r.get("scenario_text") == text and _same_config(r, until)):
            return r
    return None


@dataclass
class Job:
    """A background what-if: progress and results, read by the page's polling fragment.

    Each arm runs ``replications`` times, replication ``r`` with seed ``seed + r`` in both
    (common random numbers): ``baseline_ids[r]`` and ``run_ids[r]`` are a pair."""

    id: str
    base_path: str
    store_path: str
    seed: int
    until: float
    changes: dict
    replications: int = 1
    scenario_path: str = ""
    status: str = "queued"  # queued | baseline | variant | done | failed | unchanged
    progress: float = 0.0  # 0..1 over every run of both arms
    message: str = ""
    baseline_ids: list[str] = field(default_factory=list)
    baselines_reused: int = 0
    run_ids: list[str] = field(default_factory=list)
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.replications))

    @property
    def baseline_id(self) -> str | None:
        """The first replication's baseline run."""
        return self.baseline_ids[0] if self.baseline_ids else None

    @property
    def run_id(self) -> str | None:
        """The first replication's what-if run."""
        return self.run_ids[0] if self.run_ids else None

    @property
    def baseline_reused(self) -> bool:
        """Every baseline run came from the store (none was run for this what-if)."""
        return bool(self.baseline_ids) and self.baselines_reused == len(self.baseline_ids)

    @property
    def done(self) -> bool:
        return self.status in ("done", "failed", "unchanged")

    def wait(self, timeout: float | None = None) -> "Job":
        if self.thread is not None:
            self.thread.join(timeout)
        return self


_JOBS: dict[str, Job] = {}
_JOBS_LOCK = threading.Lock()
MAX_JOBS = max(1, int(os.environ.get("DESIM_WHATIF_JOBS", "1")))
"""What-ifs simulating at once per dashboard server (``DESIM_WHATIF_JOBS``); later ones queue."""
MAX_UNTIL = float(os.environ.get("DESIM_WHATIF_MAX_UNTIL", str(4 * 3600)))
"""The longest run (simulated seconds) a what-if may ask for (``DESIM_WHATIF_MAX_UNTIL``)."""
_SLOTS = threading.BoundedSemaphore(MAX_JOBS)


def queued_ahead(job: "Job") -> int:
    """How many what-ifs started before ``job`` are still waiting for a slot."""
    with _JOBS_LOCK:
        return sum(1 for j in _JOBS.values() if j.status == "queued" and j.started < job.started and j is not job)


def get_job(job_id: str | None) -> Job | None:
    with _JOBS_LOCK:
        return _JOBS.get(job_id) if job_id else None


def _run_job(job: Job) -> None:
    """Wait for a slot (at most :data:`MAX_JOBS` what-ifs simulate at once), then run the job."""
    job.message = "queued: waiting for the what-if before it to finish"
    with _SLOTS:
        _run_job_now(job)


def _run_job_now(job: Job) -> None:
    store_path = Path(job.store_path)
    try:
        var = build_scenario(read_base(job.base_path), **job.changes)
        var_path = _variant_file(store_path, variant_text(var, job.changes, job.base_path), var.name)
        job.scenario_path = str(var_path)
        var_sc = load(var_path)  # the file as written: validated and wiring-checked before anything runs
        base_sc = load(job.base_path)
        n = job.replications
        total = 2 * n

        def progress(done: int):
            def cb(now: float) -> None:
                job.progress = min(1.0, (done + now / job.until) / total)
            return cb

        job.status, job.message = "baseline", "looking for baseline runs"
        store = Store(store_path)
        for r, seed in enumerate(job.seeds):
            found = find_baseline(store, job.base_path, seed, job.until)
            if found is not None:
                job.baseline_ids.append(found["run_id"])
                job.baselines_reused += 1
            else:
                job.message = f"running the baseline, replication {r + 1} of {n} (seed {seed})"
                s = record_run(base_sc, Path(job.base_path), store_path, seed=seed, until=job.until,
                               progress=progress(r))
                job.baseline_ids.append(s["run_id"])
            job.progress = (r + 1) / total
        job.status = "variant"
        for r, seed in enumerate(job.seeds):
            job.message = f"running the what-if, replication {r + 1} of {n} (seed {seed})"
            # the run stores the variant file's text (its header says what changed: recorded_changes);
            # a changed brain also goes in as the run's brain (config["brain"]), the same as the file's
            s = record_run(var_sc, var_path, store_path, seed=seed, until=job.until, progress=progress(n + r),
                           brain=job.changes.get("brain"))
            job.run_ids.append(s["run_id"])
            job.progress = (n + r + 1) / total
        job.progress, job.status, job.message = 1.0, "done", "done"
    except Exception as e:  # shown on the page; the store marks a run that raised as failed
        job.status, job.error = "failed", f"{type(e).__name__}: {e}"
        job.message = traceback.format_exc(limit=3)
    finally:
        job.finished = time.time()


def start_job(base_path: str | Path, store_path: str | Path, changes: dict, *, seed: int = 1,
              until: float = 600.0, replications: int = 1) -> Job:
    """Start a what-if in a daemon thread; ``changes`` are :func:`build_scenario` keywords. Each arm
    runs ``replications`` times, with the seeds ``seed .. seed + replications - 1``.

    A bad change raises ValueError (one line) here, before any thread starts. A what-if that
    changes nothing (:func:`unchanged`) starts no thread and runs nothing: the job is finished
    at once with status ``unchanged``."""
    if not 1 <= int(replications) <= 100:
        raise ValueError(f"replications must be 1..100, not {replications!r}")
    if not 0 < float(until) <= MAX_UNTIL:
        raise ValueError(f"a what-if runs at most {MAX_UNTIL:g} simulated seconds (DESIM_WHATIF_MAX_UNTIL), not {until!r}")
    base = read_base(base_path)
    same = not changes or _same_scenario(build_scenario(base, **changes), base)  # a bad change raises here
    job = Job(uuid.uuid4().hex[:10], str(base_path), str(store_path), int(seed), float(until), dict(changes),
              int(replications))
    with _JOBS_LOCK:
        _JOBS[job.id] = job
    if same:
        job.status, job.progress, job.finished = "unchanged", 1.0, time.time()
        job.message = "nothing was changed from the base scenario: the what-if would be the baseline itself"
        return job
    job.thread = threading.Thread(target=_run_job, args=(job,), name=f"desim-whatif-{job.id}", daemon=True)
    job.thread.start()
    return job
