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
any ``desim run``):

1. the baseline: the base scenario file unchanged, same seed and length; an
   identical completed run already in the store is reused instead;
2. the variant: the edited scenario, written as TOML (tomli-w) next to the store
   (``<store dir>/whatif/<name>-<digest>.toml``) so the run's ``config.path``
   stays valid. The file's header comment says what changed, in words and as a
   ``# whatif = {...}`` JSON line; the run stores that text as its
   ``scenario_text``, and :func:`recorded_changes` reads the changes back.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
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
    "variant_text",
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
    - ``brain``: ``warehouse.brain``, one of :data:`BRAINS`
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
    if brain is not None and brain not in BRAINS:
        raise ValueError(f"brain must be one of {BRAINS}, not {brain!r}")
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
    """A background what-if: progress and results, read by the page's polling fragment."""

    id: str
    base_path: str
    store_path: str
    seed: int
    until: float
    changes: dict
    scenario_path: str = ""
    status: str = "queued"  # queued | baseline | variant | done | failed
    progress: float = 0.0  # 0..1 over both runs
    message: str = ""
    baseline_id: str | None = None
    baseline_reused: bool = False
    run_id: str | None = None
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.status in ("done", "failed")

    def wait(self, timeout: float | None = None) -> "Job":
        if self.thread is not None:
            self.thread.join(timeout)
        return self


_JOBS: dict[str, Job] = {}
_JOBS_LOCK = threading.Lock()


def get_job(job_id: str | None) -> Job | None:
    with _JOBS_LOCK:
        return _JOBS.get(job_id) if job_id else None


def _run_job(job: Job) -> None:
    store_path = Path(job.store_path)
    try:
        var = build_scenario(read_base(job.base_path), **job.changes)
        var_path = _variant_file(store_path, variant_text(var, job.changes, job.base_path), var.name)
        job.scenario_path = str(var_path)
        var_sc = load(var_path)  # the file as written: validated and wiring-checked before anything runs
        base_sc = load(job.base_path)

        def progress(phase: int):
            def cb(now: float) -> None:
                job.progress = min(1.0, (phase + now / job.until) / 2)
            return cb

        job.status, job.message = "baseline", "looking for a baseline run"
        found = find_baseline(Store(store_path), job.base_path, job.seed, job.until)
        if found is not None:
            job.baseline_id, job.baseline_reused = found["run_id"], True
        else:
            job.message = "running the baseline"
            s = record_run(base_sc, Path(job.base_path), store_path, seed=job.seed, until=job.until,
                           progress=progress(0))
            job.baseline_id = s["run_id"]
        job.progress = 0.5
        job.status, job.message = "variant", "running the what-if"
        # the run stores the variant file's text (its header says what changed: recorded_changes);
        # a changed brain also goes in as the run's brain (config["brain"]), the same as the file's
        s = record_run(var_sc, var_path, store_path, seed=job.seed, until=job.until, progress=progress(1),
                       brain=job.changes.get("brain"))
        job.run_id = s["run_id"]
        job.progress, job.status, job.message = 1.0, "done", "done"
    except Exception as e:  # shown on the page; the store marks a run that raised as failed
        job.status, job.error = "failed", f"{type(e).__name__}: {e}"
        job.message = traceback.format_exc(limit=3)
    finally:
        job.finished = time.time()


def start_job(base_path: str | Path, store_path: str | Path, changes: dict, *, seed: int = 1,
              until: float = 600.0) -> Job:
    """Start a what-if in a daemon thread; ``changes`` are :func:`build_scenario` keywords.

    A bad change raises ValueError (one line) here, before any thread starts."""
    build_scenario(read_base(base_path), **changes)
    job = Job(uuid.uuid4().hex[:10], str(base_path), str(store_path), int(seed), float(until), dict(changes))
    job.thread = threading.Thread(target=_run_job, args=(job,), name=f"desim-whatif-{job.id}", daemon=True)
    with _JOBS_LOCK:
        _JOBS[job.id] = job
    job.thread.start()
    return job
