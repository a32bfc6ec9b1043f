"""The dashboard's data layer, without Streamlit: reads and the shaping of what pages show.

Every read goes through :class:`desim.store.Store`, which opens the DuckDB
catalog for a moment per call and reads bulk rows from Parquet parts, so the
dashboard never holds a connection that would block a writer. The Streamlit
caching wrappers live in :mod:`dashboards.common`.

Stored runs are read as they were recorded: nothing here rebuilds a run from its
scenario with today's code (the Network page draws the ``net_nodes`` and
``net_links`` tables the run wrote). The producers' table declarations are imported
so a table no run has written yet reads as empty with its declared columns.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import networkx as nx
import numpy as np
import pandas as pd

import desim.models.warehouse.tables  # noqa: F401  (declarations only: timeseries, contention, paths, events, orders)
from desim.models.warehouse.tables import WAITING
import desim.network.tables  # noqa: F401  (net_nodes, net_links, net_delays, events)
import desim.policies.tables  # noqa: F401  (train_curves, promotions)
from desim.analysis import paired_diff_ci
from desim.store import Store

DEFAULT_STORE = "runs/desim.duckdb"
FEW_RUNS = 3  # read_table: up to this many runs, Store.table; more, one query
TRAIN_METRICS = ("return", "loss", "entropy", "value_error")
RUN_KINDS = ("run", "train", "sweep")


def store_path() -> str:
    """The store the dashboard reads: ``$DESIM_STORE`` (set by ``desim dash``), else the default."""
    return str(Path(os.environ.get("DESIM_STORE") or DEFAULT_STORE).expanduser().resolve())


def _store(path: str) -> Store:
    return Store(path)


# --------------------------------------------------------------------------- runs


def catalog_stamp(path: str) -> tuple:
    """Size and mtime of the catalog file and its WAL: they change whenever a run is
    added or updated (a cheap 'has anything changed' check, no DuckDB open)."""
    out = []
    for p in (path, path + ".wal"):
        try:
            st = os.stat(p)
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


def list_runs(path: str) -> list[dict]:
    return _store(path).list_runs()


def get_run(path: str, run_id: str) -> dict:
    return _store(path).get_run(run_id)


def store_version(runs: Sequence[dict], now: float | None = None, live_every: float = 2.0) -> tuple:
    """A cache key that changes when the store does: the run count, the newest start and
    finish, the statuses; while a run is still writing, also a clock bucket of
    ``live_every`` seconds (its rows grow without touching the catalog)."""
    import time

    running = tuple(sorted(r["run_id"] for r in runs if r.get("status") == "running"))
    latest_start = max((str(r.get("started_at")) for r in runs), default="")
    latest_finish = max((str(r.get("finished_at")) for r in runs if r.get("finished_at")), default="")
    bucket = int((now if now is not None else time.time()) / live_every) if running else 0
    return (len(runs), latest_start, latest_finish, running, bucket)


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _dropped_total(dropped: Any) -> int | None:
    if isinstance(dropped, dict):
        return int(sum(v for v in dropped.values() if isinstance(v, (int, float))))
    return None


def runs_frame(runs: Sequence[dict]) -> pd.DataFrame:
    """One row per run with its headline figures (what the Runs page lists)."""
    rows = []
    for r in runs:
        s = r.get("summary") or {}
        rows.append({
            "run_id": r["run_id"],
            "kind": r.get("kind"),
            "scenario": r.get("scenario"),
            "seed": r.get("seed"),
            "brain": r.get("brain"),
            "status": r.get("status"),
            "started_at": r.get("started_at"),
            "duration_s": r.get("duration_s"),
            "sim_time": s.get("sim_time"),
            "robots": s.get("robots"),
            "deliveries": s.get("deliveries"),
            "throughput_per_hour": s.get("throughput_per_hour"),
            "latency_p50": _get(s, "order_latency", "p50"),
            "latency_p95": _get(s, "order_latency", "p95"),
            "latency_p99": _get(s, "order_latency", "p99"),
            "deadlocks": s.get("deadlocks"),
            "collisions": s.get("collisions"),
            "orders_failed": _dropped_total(_get(s, "orders", "failed")),
            "msgs_sent": _get(s, "messages", "sent"),
            "msgs_delivered": _get(s, "messages", "delivered"),
            "msgs_dropped": _dropped_total(_get(s, "messages", "dropped")),
            "algo": (r.get("config") or {}).get("algo") if r.get("kind") == "train" else None,
            "env_steps": s.get("steps") if r.get("kind") == "train" else None,
            "requested_steps": (r.get("config") or {}).get("steps") if r.get("kind") == "train" else None,
            "final_return": s.get("final_return"),
            "incumbent_version": s.get("incumbent_version"),
            "promotions": s.get("promotions") if r.get("kind") == "train" else None,
            "rollbacks": s.get("rollbacks") if r.get("kind") == "train" else None,
            "env_steps_per_s": s.get("env_steps_per_s"),
            "points": len((r.get("config") or {}).get("points") or []) if r.get("kind") == "sweep" else None,
            "replications": (r.get("config") or {}).get("replications") if r.get("kind") == "sweep" else None,
            "tables": ",".join(sorted((r.get("tables") or {}).keys())),
        })
    return pd.DataFrame(rows, columns=_ALL_COLUMNS)


_COMMON = ["run_id", "kind", "scenario", "seed", "brain", "status", "started_at", "duration_s"]
RUN_COLUMNS = {  # the columns each kind of run has (the Runs page shows each kind in its own table)
    "run": _COMMON + ["sim_time", "robots", "deliveries", "throughput_per_hour", "latency_p50", "latency_p95",
                      "latency_p99", "deadlocks", "collisions", "orders_failed", "msgs_sent", "msgs_delivered",
                      "msgs_dropped"],
    "train": _COMMON + ["algo", "env_steps", "requested_steps", "final_return", "incumbent_version", "promotions",
                        "rollbacks", "env_steps_per_s"],
    "sweep": _COMMON + ["points", "replications"],
}
_ALL_COLUMNS = list(dict.fromkeys(c for cols in RUN_COLUMNS.values() for c in cols)) + ["tables"]


def has_table(run: dict, table: str) -> bool:
    """Whether a run wrote ``table`` (finished runs list their tables; a running one may still)."""
    tables = run.get("tables")
    if tables:
        return bool((tables.get(table) or {}).get("rows"))
    return run.get("status") == "running"


WAREHOUSE_KEYS = ("floor", "robots")  # summary figures only a warehouse run has
WAREHOUSE_TABLES = ("contention", "floor_frames", "orders", "robot_time")  # tables only a warehouse run stores
_WAREHOUSE_SECTION = re.compile(r"^\s*\[\s*warehouse\s*[.\]]", re.M)


def model_of(run: dict) -> str | None:
    """The model a run simulated: its summary's ``model`` where it names one; else ``warehouse`` when
    its summary has warehouse figures, it stored warehouse tables or its scenario has a ``[warehouse]``
    section; else None (a network-only run, or a model that does not say)."""
    s = run.get("summary") or {}
    m = s.get("model")
    if isinstance(m, str) and m:
        return m
    if any(k in s for k in WAREHOUSE_KEYS) or set(run.get("tables") or {}) & set(WAREHOUSE_TABLES):
        return "warehouse"
    if _WAREHOUSE_SECTION.search(run.get("scenario_text") or ""):
        return "warehouse"
    return None


def is_warehouse(run: dict) -> bool:
    """A warehouse simulation run (what Contention, Floor, Utilisation and Over time show)."""
    s = run.get("summary") or {}
    if "floor" in s:
        return True
    if run.get("kind") != "run":
        return False
    model = model_of(run)
    if model is not None:
        return model == "warehouse"
    return has_table(run, "contention")  # a run still writing that says nothing yet: maybe


def other_model(run: dict | None) -> bool:
    """A simulation run of another model than the warehouse (or of the network alone)."""
    return bool(run) and run.get("kind") == "run" and not is_warehouse(run)


def what_run(run: dict) -> str:
    """``a clientserver run`` (its model, else its scenario), with the scenario where it differs."""
    model, scen = model_of(run), run.get("scenario")
    name = model or scen or "?"
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name} run" + (
        f" (scenario {scen})" if model and scen and scen != model else "")


def warehouse_only(run: dict) -> str:
    """The line a warehouse page says for another model's run: what the run is and where to look instead."""
    pages = "**Tables** / **Network**" if is_network(run) else "**Tables**"
    return f"This page shows warehouse runs; run `{run['run_id']}` is {what_run(run)} — see {pages}."


def is_network(run: dict) -> bool:
    return has_table(run, "net_links") and run.get("kind") == "run"


def run_tables(path: str, run: dict) -> dict[str, dict]:
    """The tables a run stored, ``{name: {"parts": n, "rows": m}}``: from its catalog row when it has
    finished, counted from its parts (their Parquet footers) while it is still writing."""
    if run.get("tables") or run.get("status") != "running":
        return dict(run.get("tables") or {})
    return _store(path)._parts.counts(run["run_id"])


def run_label(run: dict) -> str:
    seed = run.get("seed")
    brain = f" {run['brain']}" if run.get("brain") else ""
    return f"{run['run_id']} · {run.get('kind', 'run')} · {run.get('scenario')} · seed {seed}{brain} · {run.get('status')}"


# --------------------------------------------------------------------------- tables


def read_table(path: str, name: str, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Rows of a run table as a DataFrame; an unknown table (nothing written yet) is empty.

    ``Store.table`` resolves every id against the catalog, one catalog read each (over a second for
    fifty runs), and then reads only those runs' parts; a query over the table's parts reads the
    catalog once but every run's part footers. So a few runs go through ``table`` and more through
    one query (the dashboard names runs by their full ids, as listed)."""
    ids = list(run_ids) if run_ids is not None else None
    if ids is not None and not ids:
        return pd.DataFrame()
    store = _store(path)
    if name not in store.table_names():
        return pd.DataFrame()
    if ids is None or len(ids) <= FEW_RUNS:
        return store.table(name, ids).to_pandas()
    quoted = '"' + name.replace('"', '""') + '"'
    return store.query_arrow(f"SELECT * FROM {quoted} WHERE list_contains(?, run_id)", [ids]).to_pandas()


# --------------------------------------------------------------------------- contention


def floor_frame(contention: pd.DataFrame) -> pd.DataFrame:
    """The floor's cells with x2/y2 for rectangles and the 'both' count."""
    if contention.empty:
        return contention
    df = contention.copy()
    if "cell" not in df:
        df["cell"] = "highway"
    df["cell"] = df["cell"].fillna("highway")
    df["blocked"] = df["blocked"].fillna(0).astype(int)
    df["collisions"] = df["collisions"].fillna(0).astype(int)
    df["both"] = df["blocked"] + df["collisions"]
    df["x2"] = df["x"] + 1
    df["y2"] = df["y"] + 1
    return df


def path_frame(paths: pd.DataFrame, t0: float, t1: float, robots: Sequence[int] | None = None) -> pd.DataFrame:
    """Robot positions within [t0, t1], cell centres, in time order (for line marks)."""
    if paths.empty:
        return paths
    df = paths[(paths["t"] >= t0) & (paths["t"] <= t1)]
    if robots is not None:
        df = df[df["robot"].isin(list(robots))]
    df = df.sort_values(["robot", "t"]).copy()
    df["cx"] = df["x"] + 0.5
    df["cy"] = df["y"] + 0.5
    df["robot"] = df["robot"].astype(str)
    return df


def parse_detail(detail: Any) -> dict:
    if isinstance(detail, dict):
        return detail
    if not detail:
        return {}
    try:
        out = json.loads(detail)
    except (TypeError, ValueError):
        return {"text": str(detail)}
    return out if isinstance(out, dict) else {"value": out}


def deadlock_frame(events: pd.DataFrame) -> pd.DataFrame:
    if events.empty:
        return pd.DataFrame(columns=["t", "agent", "type"])
    df = events[events["kind"] == "deadlock"].copy()
    df["type"] = [parse_detail(d).get("type", "deadlock") for d in df["detail"]]
    return df[["t", "agent", "type"]].reset_index(drop=True)


# --------------------------------------------------------------------------- faults & topology


def fault_windows(events: pd.DataFrame | None, summary_faults: Sequence | None = None,
                  end: float | None = None) -> pd.DataFrame:
    """Fault intervals (fault, target, start, end) from ``fault_start``/``fault_end``/``fault_heal``
    events (or the summary's ``faults`` list); a fault still active at the end runs to ``end``."""
    log: list[tuple[float, str, str, str]] = []
    if events is not None and not events.empty:
        ev = events[events["kind"].astype(str).str.startswith("fault_")]
        for t, kind, detail in zip(ev["t"], ev["kind"], ev["detail"]):
            d = parse_detail(detail)
            log.append((float(t), kind.removeprefix("fault_"), str(d.get("fault", "")), str(d.get("target", ""))))
    elif summary_faults:
        for item in summary_faults:
            t, what, kind, target = (list(item) + ["", "", ""])[:4]
            log.append((float(t), str(what), str(kind), str(target)))
    log.sort(key=lambda x: x[0])
    open_: list[dict] = []
    out: list[dict] = []
    for t, what, kind, target in log:
        if what == "start":
            open_.append({"fault": kind, "target": target, "start": t, "end": None})
        elif what == "end":
            for w in open_:
                if w["fault"] == kind and w["target"] == target:
                    w["end"] = t
                    out.append(w)
                    open_.remove(w)
                    break
        elif what == "heal":
            for w in open_:
                w["end"] = t
                out.append(w)
            open_ = []
    for w in open_:
        w["end"] = end if end is not None else math.inf
        out.append(w)
    out.sort(key=lambda w: w["start"])
    return pd.DataFrame(out, columns=["fault", "target", "start", "end"])


def active_faults(windows: pd.DataFrame, t: float) -> pd.DataFrame:
    if windows.empty:
        return windows
    return windows[(windows["start"] <= t) & (t < windows["end"])]


def _split_links(target: str, nodes: set[str]) -> list[tuple[str, str]]:
    """'a-b,c-d' (names may hold '-') into node pairs known to the graph."""
    out = []
    for item in target.split(","):
        parts = item.split("-")
        for i in range(1, len(parts)):
            u, v = "-".join(parts[:i]), "-".join(parts[i:])
            if u in nodes and v in nodes:
                out.append((u, v))
                break
    return out


def edge_states(g: nx.Graph, active: pd.DataFrame) -> dict[frozenset, str]:
    """'cut' | 'degraded' per undirected edge touched by the active faults.

    isolate: every edge of the named nodes is cut; split/bridge: edges between nodes
    of different groups (nodes in no group keep their links); flap: the named links
    (down part of the time: cut); latency_spike/slow_link: the named links, or all, degraded.
    """
    states: dict[frozenset, str] = {}
    nodes = set(g.nodes)
    for fault, target in zip(active["fault"], active["target"]) if not active.empty else ():
        if fault == "isolate":
            for n in target.split(","):
                if n in g:
                    for u, v in g.edges(n):
                        states[frozenset((u, v))] = "cut"
        elif fault in ("split", "bridge"):
            groups = [set(x.strip() for x in grp.split(",") if x.strip()) for grp in target.split("|")]
            where = {n: i for i, grp in enumerate(groups) for n in grp}
            for u, v in g.edges:
                if u in where and v in where and where[u] != where[v]:
                    states[frozenset((u, v))] = "cut"
        elif fault in ("flap", "cut"):  # one link, written "a-b" in the fault log
            for u, v in _split_links(target, nodes):
                states[frozenset((u, v))] = "cut"
        elif fault in ("latency_spike", "slow_link"):
            edges = list(g.edges) if target in ("all", "") else _split_links(target, nodes)
            for u, v in edges:
                states.setdefault(frozenset((u, v)), "degraded")
    return states


def topology(links: pd.DataFrame, nodes: pd.DataFrame | None = None) -> nx.Graph:
    """The run's network as it recorded it: nodes and roles from its ``net_nodes`` table,
    edges from its per-link table (``net_links``). Edge ``latency`` is the mean measured
    one-way delay over both directions (the expected delay where no message crossed).
    A run recorded before desim stored its network has no ``net_nodes``: its nodes come
    from the links alone, with role ``unknown``."""
    g = nx.Graph()
    if nodes is not None and not nodes.empty:
        for row in nodes.itertuples(index=False):
            g.add_node(str(row.node), role=str(row.role or "unknown"))
    if not links.empty:
        for row in links.itertuples(index=False):
            u, v = str(row.src), str(row.dst)
            g.add_edge(u, v)
            d = g.edges[u, v]
            mean = getattr(row, "mean_delay", None)
            exp = getattr(row, "expected_delay", None)
            val = mean if mean is not None and not pd.isna(mean) else exp
            if val is not None and not pd.isna(val):
                d.setdefault("delays", []).append(float(val))
            d["sent"] = d.get("sent", 0) + int(getattr(row, "sent", 0) or 0)
    for u, v, d in g.edges(data=True):
        vals = d.pop("delays", [])
        d["latency"] = float(np.mean(vals)) if vals else None
    for n in g.nodes:
        g.nodes[n].setdefault("role", "unknown")
    return g


def layout(g: nx.Graph) -> dict[str, tuple[float, float]]:
    """Node positions: Kamada-Kawai (deterministic; spring layout if SciPy is missing)."""
    if g.number_of_nodes() == 0:
        return {}
    try:
        pos = nx.kamada_kawai_layout(g)
    except Exception:
        pos = nx.spring_layout(g, seed=1)
    return {str(n): (float(p[0]), float(p[1])) for n, p in pos.items()}


def topology_frames(g: nx.Graph, pos: dict, states: dict[frozenset, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(nodes, edges) DataFrames to draw: positions, roles, latency (ms), state."""
    nodes = pd.DataFrame([{"node": str(n), "role": d.get("role", ""), "x": pos[str(n)][0], "y": pos[str(n)][1]}
                          for n, d in g.nodes(data=True)], columns=["node", "role", "x", "y"])
    edges = []
    for u, v, d in g.edges(data=True):
        lat = d.get("latency")
        edges.append({"u": str(u), "v": str(v), "x": pos[str(u)][0], "y": pos[str(u)][1],
                      "x2": pos[str(v)][0], "y2": pos[str(v)][1],
                      "latency_ms": None if lat is None else lat * 1e3, "sent": d.get("sent", 0),
                      "state": states.get(frozenset((u, v)), "up")})
    return nodes, pd.DataFrame(edges, columns=["u", "v", "x", "y", "x2", "y2", "latency_ms", "sent", "state"])


def conservation(summary: dict) -> pd.DataFrame | None:
    """The message balance as rows (term, count, side): sent + duplicated on one side,
    delivered + each drop reason + in flight on the other."""
    m = (summary or {}).get("messages")
    if not isinstance(m, dict) or "sent" not in m:
        return None
    rows = [("sent", int(m.get("sent", 0)), "in"), ("duplicated", int(m.get("duplicated", 0) or 0), "in"),
            ("delivered", int(m.get("delivered", 0)), "out")]
    for reason, n in sorted((m.get("dropped") or {}).items()):
        rows.append((f"dropped: {reason}", int(n), "out"))
    rows.append(("in flight", int(m.get("in_flight", 0) or 0), "out"))
    return pd.DataFrame(rows, columns=["term", "count", "side"])


def conservation_ok(df: pd.DataFrame) -> bool:
    return int(df.loc[df.side == "in", "count"].sum()) == int(df.loc[df.side == "out", "count"].sum())


# --------------------------------------------------------------------------- training curves


def curve_bands(curves: pd.DataFrame, x: str = "step", band: str = "minmax", points: int = 200) -> pd.DataFrame:
    """Mean and a band across seeds (runs) per (algo, metric) against ``x`` ('step' or 'wall_s').

    Each run's curve is interpolated onto a common grid over the range every run
    covers so far; grid points beyond a run's last logged x are left to the runs
    that reach them. ``band``: 'minmax' or 'std' (mean ± one standard deviation).
    """
    cols = ["algo", "metric", "x", "mean", "lo", "hi", "n"]
    if curves.empty or x not in curves:
        return pd.DataFrame(columns=cols)
    df = curves.dropna(subset=[x, "value"]).copy()
    df["algo"] = df["algo"].fillna("?") if "algo" in df else "?"
    out = []
    for (algo, metric), grp in df.groupby(["algo", "metric"], sort=True):
        runs = [r.sort_values(x) for _, r in grp.groupby("run_id")]
        lo_x, hi_x = float(grp[x].min()), float(grp[x].max())
        grid = np.linspace(lo_x, hi_x, points) if hi_x > lo_x else np.array([lo_x])
        mat = np.full((len(runs), grid.size), np.nan)
        for i, r in enumerate(runs):
            xs, ys = r[x].to_numpy(float), r["value"].to_numpy(float)
            inside = (grid >= xs[0]) & (grid <= xs[-1])
            mat[i, inside] = np.interp(grid[inside], xs, ys)
        n = np.sum(~np.isnan(mat), axis=0)
        keep = n > 0
        with np.errstate(all="ignore"):
            mean = np.nanmean(mat[:, keep], axis=0)
            if band == "std":
                sd = np.nanstd(mat[:, keep], axis=0)
                lo, hi = mean - sd, mean + sd
            else:
                lo, hi = np.nanmin(mat[:, keep], axis=0), np.nanmax(mat[:, keep], axis=0)
        out.append(pd.DataFrame({"algo": algo, "metric": metric, "x": grid[keep], "mean": mean,
                                 "lo": lo, "hi": hi, "n": n[keep]}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=cols)


_CREDIT = re.compile(r"^credit/(.+)$")


def credit_frame(curves: pd.DataFrame) -> pd.DataFrame:
    """Per-agent credit (metrics ``credit/<agent>``): each run's last value, per algo and agent."""
    if curves.empty:
        return pd.DataFrame(columns=["algo", "agent", "run_id", "credit"])
    df = curves[curves["metric"].astype(str).str.startswith("credit/")]
    if df.empty:
        return pd.DataFrame(columns=["algo", "agent", "run_id", "credit"])
    last = df.sort_values("step").groupby(["run_id", "metric"], as_index=False).last()
    last["agent"] = [_CREDIT.match(m).group(1) for m in last["metric"]]
    last["algo"] = last["algo"].fillna("?")
    return last.rename(columns={"value": "credit"})[["algo", "agent", "run_id", "credit"]]


# --------------------------------------------------------------------------- what-if comparison


HEADLINES = (
    ("throughput_per_hour", "throughput / h", ("throughput_per_hour",), False),
    ("deliveries", "deliveries", ("deliveries",), False),
    ("latency_p50", "latency p50 (s)", ("order_latency", "p50"), True),
    ("latency_p95", "latency p95 (s)", ("order_latency", "p95"), True),
    ("latency_p99", "latency p99 (s)", ("order_latency", "p99"), True),
    ("deadlocks", "deadlocks", ("deadlocks",), True),
    ("collisions", "collisions", ("collisions",), True),
)


def compare(baseline: dict, variant: dict) -> pd.DataFrame:
    """Headline figures of two summaries side by side with the difference
    (``lower_better`` says which way is an improvement)."""
    rows = []
    for key, label, path, lower in HEADLINES:
        b, v = _get(baseline, *path), _get(variant, *path)
        diff = (v - b) if isinstance(b, (int, float)) and isinstance(v, (int, float)) else None
        rows.append({"metric": key, "label": label, "baseline": b, "what_if": v, "diff": diff, "lower_better": lower})
    return pd.DataFrame(rows)


def compare_paired(baselines: Sequence[dict], variants: Sequence[dict], level: float = 0.95) -> pd.DataFrame:
    """Headline figures of replicated arms, paired by replication (``baselines[i]`` and ``variants[i]``
    ran with the same seed: common random numbers): each arm's mean, the mean difference
    (what-if - baseline) and its paired ``level`` interval ``[low, high]``. ``significant``: the
    interval excludes 0; None with fewer than 2 pairs (no interval). Columns as :func:`compare`'s,
    plus ``low``, ``high``, ``half_width``, ``n``, ``relative`` (the difference over the
    baseline's mean) and ``significant``."""
    if len(baselines) != len(variants):
        raise ValueError(f"paired arms need as many baselines as what-ifs ({len(baselines)} and {len(variants)})")
    rows = []
    for key, label, path, lower in HEADLINES:
        a = [_num(_get(s, *path)) for s in baselines]
        b = [_num(_get(s, *path)) for s in variants]
        d = paired_diff_ci(a, b, level)
        if d.n == 0:
            rows.append({"metric": key, "label": label, "baseline": None, "what_if": None, "diff": None, "low": None,
                         "high": None, "half_width": None, "n": 0, "relative": None, "significant": None,
                         "lower_better": lower})
            continue
        interval = d.n >= 2 and math.isfinite(d.half_width)
        rows.append({"metric": key, "label": label, "baseline": d.mean_a, "what_if": d.mean_b, "diff": d.mean,
                     "low": d.low if interval else None, "high": d.high if interval else None,
                     "half_width": d.half_width if interval else None, "n": d.n, "relative": d.relative,
                     "significant": bool(d.significant) if interval else None, "lower_better": lower})
    return pd.DataFrame(rows)


def verdict(significant: Any, n: int | None = None) -> str:
    """A difference's interval in words: significant (the interval excludes 0), not significant (it
    contains 0: the difference could be noise), or no interval (fewer than 2 pairs)."""
    if significant is None or pd.isna(significant):
        return "one replication: no interval" if (n or 0) < 2 else "no interval"
    return "significant" if bool(significant) else "not significant"


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


WAIT_STATES = WAITING  # the states that are not work (the warehouse's list)


def robot_time_frame(tbl: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float], str | None]:
    """A run's ``robot_time`` rows (seconds per state per robot) as the long frame of
    :func:`charts.time_share_bars`: one bar for all robots together, then one per robot. Also the
    shares summed over robots and the bottleneck (the largest of the states that are not work)."""
    if tbl is None or tbl.empty:
        return pd.DataFrame(columns=["tick", "label", "state", "share", "order"]), {}, None
    states = [c for c in tbl.columns if c not in ("run_id", "robot", "zone")]
    rows = []
    total = tbl[states].sum()
    shares = (total / total.sum()).to_dict() if total.sum() > 0 else {k: 0.0 for k in states}
    bars = [("all robots", shares)]
    for _, r in tbl.sort_values("robot").iterrows():
        tot = float(r[states].sum())
        bars.append((f"robot {int(r['robot'])}", {k: (float(r[k]) / tot if tot > 0 else 0.0) for k in states}))
    for tick, sh in bars:
        for i, k in enumerate(states):
            rows.append({"tick": tick, "label": tick, "state": k, "share": sh[k], "order": i})
    waits = {k: shares.get(k, 0.0) for k in WAIT_STATES if k in shares}
    bottleneck = max(waits, key=waits.get) if waits and max(waits.values()) > 0 else None
    return pd.DataFrame(rows), shares, bottleneck
