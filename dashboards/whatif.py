"""What-if runs: edit a base scenario, run it in the background, compare it with a baseline.

Nothing here imports Streamlit: the page (``views/whatif.py``) calls
:func:`defaults`, :func:`build_scenario` and :func:`start_job`, then polls the
returned :class:`Job` from a fragment. A job runs in a daemon thread of the
dashboard process and records its runs through :func:`desim.app.recording.record_run`
(so they land in the store like any ``desim run``):

1. the baseline: the base scenario file unchanged, same seed and length; an
   identical completed run already in the store is reused instead;
2. the variant: the edited scenario, written as TOML next to the store
   (``<store dir>/whatif/<name>.toml``) so the run's ``config.path`` stays valid.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import threading
import time
import tomllib
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BRAINS",
    "Partition",
    "build_scenario",
    "defaults",
    "describe",
    "dumps_toml",
    "find_baseline",
    "Job",
    "start_job",
    "get_job",
]

BRAINS = ("random", "greedy", "epsilon_greedy")


@dataclass(frozen=True)
class Partition:
    """Cut zone ``zone``'s controller off the network from ``start`` for ``duration`` seconds."""

    start: float
    duration: float
    zone: int


# ----------------------------------------------------------------------- scenario


def _wireless(data: dict) -> dict:
    links = data.setdefault("links", {})
    if "wireless" not in links:
        links["wireless"] = copy.deepcopy(links.get("default", {}))
    return links["wireless"]


def loss_rate(loss: dict | None) -> float:
    """Long-run loss fraction of a ``[links.*.loss]`` table (as network.loss.LossModel.rate)."""
    loss = loss or {}
    model = loss.get("model", "none")
    p = float(loss.get("p", 0.0))
    if model == "bernoulli":
        return p
    if model == "gilbert_elliott":
        r = float(loss.get("r", 1.0))
        good, bad = float(loss.get("loss_good", 0.0)), float(loss.get("loss_bad", 1.0))
        return (r * good + p * bad) / (p + r) if p + r > 0 else 0.0
    return 0.0


def defaults(base: dict) -> dict[str, Any]:
    """The knobs' values in ``base`` (a parsed scenario TOML dict): what the page's
    widgets start at, and what :func:`build_scenario` leaves alone."""
    w = base.get("warehouse") or {}
    links = base.get("links") or {}
    wl = links.get("wireless") or links.get("default") or {}
    delay = wl.get("delay") or {}
    part = None
    for f in base.get("faults") or []:
        m = [re.fullmatch(r"zone-(\d+)", n) for n in f.get("nodes", [])]
        if f.get("kind") == "isolate" and len(m) == 1 and m[0] and f.get("duration"):
            part = Partition(float(f["at"]), float(f["duration"]), int(m[0].group(1)))
            break
    return {
        "robots": int(w.get("robots", 2)),
        "zones": int(w.get("zones", 1)),
        "order_rate": float((w.get("orders") or {}).get("rate_per_hour", 0.0)),
        "mean_latency": float(delay.get("mean", 0.0)),
        "jitter": float(delay.get("jitter", 0.0)),
        "loss": loss_rate(wl.get("loss")),
        "partition": part,
        "brain": str(w.get("brain", "greedy")),
        "faults": len(base.get("faults") or []),
    }


def build_scenario(base: dict, *, robots: int | None = None, order_rate: float | None = None,
                   mean_latency: float | None = None, jitter: float | None = None, loss: float | None = None,
                   partition: Partition | str | None = None, brain: str | None = None,
                   name: str | None = None) -> dict:
    """A copy of the scenario dict ``base`` with the given knobs changed (None: as in base).

    - ``robots``: ``warehouse.robots`` (at least ``warehouse.zones``)
    - ``order_rate``: orders per hour, ``warehouse.orders.rate_per_hour``
    - ``mean_latency`` / ``jitter`` (seconds): the robot <-> controller hop,
      ``links.wireless.delay`` (a copy of ``links.default`` when the base has no wireless table)
    - ``loss``: long-run loss fraction on that hop; a Gilbert-Elliott model keeps its
      burst length (``r``) and gets ``p = loss * r / (1 - loss)``; otherwise Bernoulli
    - ``partition``: a :class:`Partition` replaces the base's faults with one isolate
      of ``zone-<zone>``; ``"none"`` removes every fault
    - ``brain``: ``warehouse.brain``
    - ``name``: the scenario's name (default: the base's, with ``-whatif``)
    """
    data = copy.deepcopy(base)
    w = data.get("warehouse")
    if w is None and any(v is not None for v in (robots, order_rate, brain)):
        raise ValueError("the base scenario has no [warehouse] section")
    changes: list[str] = []
    if robots is not None:
        zones = int(w.get("zones", 1))
        if int(robots) < zones:
            raise ValueError(f"robots ({robots}) must be at least the number of zones ({zones})")
        w["robots"] = int(robots)
        changes.append(f"robots={int(robots)}")
    if order_rate is not None:
        if order_rate <= 0:
            raise ValueError("order_rate must be > 0")
        w.setdefault("orders", {})["rate_per_hour"] = float(order_rate)
        changes.append(f"order_rate={float(order_rate):g}/h")
    if brain is not None:
        if brain not in BRAINS:
            raise ValueError(f"brain must be one of {BRAINS}, not {brain!r}")
        w["brain"] = brain
        changes.append(f"brain={brain}")
    if mean_latency is not None or jitter is not None:
        delay = _wireless(data).setdefault("delay", {})
        delay.setdefault("dist", "lognormal")
        if mean_latency is not None:
            if mean_latency < 0:
                raise ValueError("mean_latency must be >= 0")
            delay["mean"] = float(mean_latency)
            changes.append(f"latency={float(mean_latency) * 1e3:g}ms")
        if jitter is not None:
            if jitter < 0:
                raise ValueError("jitter must be >= 0")
            delay["jitter"] = float(jitter)
            changes.append(f"jitter={float(jitter) * 1e3:g}ms")
    if loss is not None:
        if not 0 <= loss < 1:
            raise ValueError("loss must be in [0, 1)")
        wl = _wireless(data)
        old = wl.get("loss") or {}
        if old.get("model") == "gilbert_elliott" and float(old.get("loss_good", 0)) == 0 \
                and float(old.get("loss_bad", 1)) == 1 and loss > 0:
            r = float(old.get("r", 1.0))
            wl["loss"] = dict(old, p=min(1.0, loss * r / (1 - loss)))
        elif loss > 0:
            wl["loss"] = {"model": "bernoulli", "p": float(loss)}
        else:
            wl["loss"] = {"model": "none"}
        changes.append(f"loss={float(loss):.3g}")
    if partition is not None:
        if partition == "none":
            data["faults"] = []
            changes.append("no faults")
        elif isinstance(partition, Partition):
            zones = int((w or {}).get("zones", data.get("topology", {}).get("zones", 1)))
            if not 0 <= partition.zone < zones:
                raise ValueError(f"partition zone {partition.zone} does not exist (zones 0..{zones - 1})")
            if partition.start < 0 or partition.duration <= 0:
                raise ValueError("partition needs start >= 0 and duration > 0")
            data["faults"] = [{"at": float(partition.start), "kind": "isolate",
                               "nodes": [f"zone-{partition.zone}"], "duration": float(partition.duration)}]
            changes.append(f"partition=zone-{partition.zone}@{partition.start:g}s+{partition.duration:g}s")
        else:
            raise ValueError(f"partition must be a Partition or 'none', not {partition!r}")
    data["name"] = name or f"{base.get('name', 'scenario')}-whatif"
    what = ", ".join(changes) or "no changes"
    data["description"] = f"what-if on {base.get('name')}: {what}"
    return data


def describe(changes: dict) -> str:
    """``build_scenario`` keywords in words, for the page."""
    out = []
    for k, v in changes.items():
        if k in ("mean_latency", "jitter"):
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


# ----------------------------------------------------------------------- TOML


_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(str(k))} = {_value(x)}" for k, x in v.items()) + " }" if v else "{}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def dumps_toml(data: dict, _prefix: str = "") -> str:
    """Write a scenario dict as TOML (enough for scenario files: tables, arrays of
    tables, inline values); ``tomllib.loads(dumps_toml(d)) == d``."""
    lines: list[str] = []
    tables, arrays = [], []
    for k, v in data.items():
        if v is None:
            continue
        if isinstance(v, dict) and v:
            tables.append((k, v))
        elif _is_table_array(v):
            arrays.append((k, v))
        else:
            lines.append(f"{_key(str(k))} = {_value(v)}")
    out = "\n".join(lines)
    for k, v in tables:
        name = f"{_prefix}{_key(str(k))}"
        body = dumps_toml(v, name + ".")
        head = f"[{name}]"
        # a table holding only sub-tables needs no header of its own
        only_sub = all(isinstance(x, dict) and x or _is_table_array(x) for x in v.values())
        out += ("\n\n" if out else "") + (body if only_sub else f"{head}\n{body}")
    for k, v in arrays:
        name = f"{_prefix}{_key(str(k))}"
        for item in v:
            out += ("\n\n" if out else "") + f"[[{name}]]\n" + dumps_toml(item, name + ".")
    return out.strip("\n") + ("\n" if not _prefix else "")


# ----------------------------------------------------------------------- jobs


def _same_config(run: dict, until: float) -> bool:
    cfg = run.get("config") or {}
    return not cfg.get("overrides") and cfg.get("until") is not None and math.isclose(float(cfg["until"]), until)


def find_baseline(store, base_path: str | Path, seed: int, until: float) -> dict | None:
    """A completed run of the unchanged base scenario file with this seed and length, if any."""
    text = Path(base_path).read_text()
    data = tomllib.loads(text)
    for r in store.list_runs(kind="run", status="complete"):
        if (r.get("scenario") == data.get("name") and r.get("seed") == seed
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


def _variant_file(store_path: Path, data: dict) -> Path:
    text = dumps_toml(data)
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    out = store_path.resolve().parent / "whatif" / f"{data['name']}-{digest}.toml"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists():
        tmp = out.with_suffix(f".tmp{uuid.uuid4().hex[:6]}")
        tmp.write_text(f"# written by the desim dashboard's what-if page\n{text}")
        tmp.replace(out)
    return out


def _run_job(job: Job) -> None:
    from desim.app.recording import record_run
    from desim.app.scenario import load
    from desim.store import Store

    store_path = Path(job.store_path)
    try:
        base = tomllib.loads(Path(job.base_path).read_text())
        data = build_scenario(base, **job.changes)
        var_path = _variant_file(store_path, data)
        job.scenario_path = str(var_path)
        var_sc = load(var_path)  # validates before anything runs
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
        # robots and brain also go in as overrides (the same values as the file) so the
        # run's config records what the what-if changed
        overrides = {k: job.changes[k] for k in ("robots", "brain") if job.changes.get(k) is not None}
        s = record_run(var_sc, var_path, store_path, seed=job.seed, until=job.until,
                       progress=progress(1), overrides=overrides)
        job.run_id = s["run_id"]
        job.progress, job.status, job.message = 1.0, "done", "done"
    except Exception as e:  # shown on the page; the store marks a run that raised as failed
        job.status, job.error = "failed", f"{type(e).__name__}: {e}"
        job.message = traceback.format_exc(limit=3)
    finally:
        job.finished = time.time()


def start_job(base_path: str | Path, store_path: str | Path, changes: dict, *, seed: int = 1,
              until: float = 600.0) -> Job:
    """Start a what-if in a daemon thread; ``changes`` are :func:`build_scenario` keywords."""
    build_scenario(tomllib.loads(Path(base_path).read_text()), **changes)  # fail fast on bad input
    job = Job(uuid.uuid4().hex[:10], str(base_path), str(store_path), int(seed), float(until), dict(changes))
    job.thread = threading.Thread(target=_run_job, args=(job,), name=f"desim-whatif-{job.id}", daemon=True)
    with _JOBS_LOCK:
        _JOBS[job.id] = job
    job.thread.start()
    return job
