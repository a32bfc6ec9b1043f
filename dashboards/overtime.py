"""Runs over simulated time, shaped for the charts, without Streamlit.

Everything here is computed from what a run recorded, on a grid of instants
that ends at the run's end (never past it): rolling throughput over a window
the reader sets (a count of deliveries in the window before each instant,
per hour, so it does not jump between 0 and 1,000/h as a 10 s sample does),
cumulative deliveries, the order backlog and latency percentiles from the
``orders`` table; where robots' time goes per window from the cumulative
``robot_time_series``; the network's traffic per window from ``net_flow`` and
``net_latency``. Labels name what differs between the runs compared.
"""
from __future__ import annotations

import json
import tomllib
from typing import Any, Sequence

import numpy as np
import pandas as pd

from desim.dashboards.groups import flat as dotted
from desim.models.warehouse.tables import STATES

DEFAULT_WINDOW = 300.0  # seconds: the rolling window's default (a few minutes of simulated time)
POINTS = 400  # grid points per run


def grid(t_end: float, window: float, points: int = POINTS) -> np.ndarray:
    """Instants from ``min(window, t_end)`` to ``t_end`` (the first full window to the run's end)."""
    start = min(window, t_end)
    if t_end <= start:
        return np.array([t_end])
    return np.linspace(start, t_end, max(2, min(points, int((t_end - start) / 0.5) + 2)))


def _sorted(col: pd.Series) -> np.ndarray:
    v = col.dropna().to_numpy(float) if col is not None else np.array([])
    return np.sort(v)


def orders_over_time(orders: pd.DataFrame, t_end: float, window: float) -> pd.DataFrame:
    """Per instant of :func:`grid`: ``throughput`` (deliveries in the window before it, per hour),
    ``deliveries`` (cumulative), ``backlog`` (orders created and not yet delivered or failed) and the
    ``p50``/``p95``/``p99`` latency of the orders delivered in the window (NaN where none were)."""
    cols = ["t", "throughput", "deliveries", "backlog", "p50", "p95", "p99"]
    if orders is None or orders.empty or t_end <= 0:
        return pd.DataFrame(columns=cols)
    g = grid(t_end, window)
    delivered = orders.dropna(subset=["delivered"]).sort_values("delivered")
    d_t = delivered["delivered"].to_numpy(float)
    lat = (delivered["delivered"] - delivered["created"]).to_numpy(float)
    created = _sorted(orders["created"])
    failed = _sorted(orders["failed"]) if "failed" in orders else np.array([])
    hi = np.searchsorted(d_t, g, side="right")
    lo = np.searchsorted(d_t, g - window, side="right")
    w = np.minimum(window, g)
    w = np.where(w > 0, w, np.nan)
    out = {"t": g, "throughput": (hi - lo) * 3600.0 / w, "deliveries": hi.astype(float),
           "backlog": (np.searchsorted(created, g, side="right") - hi
                       - np.searchsorted(failed, g, side="right")).astype(float)}
    for q in (50, 95, 99):
        out[f"p{q}"] = [float(np.percentile(lat[a:b], q)) if b > a else np.nan for a, b in zip(lo, hi)]
    return pd.DataFrame(out, columns=cols)


def long(df: pd.DataFrame, label: str, id_vars: Sequence[str] = ("t",)) -> pd.DataFrame:
    return df.melt(id_vars=list(id_vars), var_name="series", value_name="value").assign(run=label)


# --------------------------------------------------------------------------- labels


def _scenario_values(run: dict) -> dict[str, Any]:
    try:
        data = tomllib.loads(run.get("scenario_text") or "")
    except tomllib.TOMLDecodeError:
        data = {}
    flat = {k: json.dumps(v, sort_keys=True, default=str) for k, v in dotted(data).items()
            if k not in ("name", "description", "seed", "until")}
    return flat


def run_labels(runs: Sequence[dict], most: int = 3, always: Sequence[str] = ()) -> dict[str, str]:
    """Per run, a short label that says what differs between ``runs``: scenario, brain, seed, run
    length and the scenario values that differ (a sweep's or a what-if's changed parameter:
    ``warehouse.robots=6``); the run id's tail only where nothing else tells two runs apart.
    ``always``: facts named even when they do not differ (e.g. ``("scenario",)``)."""
    if not runs:
        return {}
    facts = []
    for r in runs:
        s = r.get("summary") or {}
        facts.append({"scenario": str(r.get("scenario")), "brain": str(s.get("brain") or r.get("brain") or ""),
                      "seed": str(r.get("seed")), "length": f"{float(s.get('sim_time') or 0):g} s"})
    values = [_scenario_values(r) for r in runs]
    varying = [k for k in ("scenario", "brain", "seed", "length") if k in always or len({f[k] for f in facts}) > 1]
    keys = sorted(set().union(*values)) if values else []
    changed = [k for k in keys if len({v.get(k) for v in values}) > 1]
    if "scenario" in varying:  # another scenario differs in many values: say which scenario, not all of them
        changed = [k for k in changed if len({(f["scenario"], v.get(k)) for f, v in zip(facts, values)})
                   > len({f["scenario"] for f in facts})]
    labels = {}
    for r, f, v in zip(runs, facts, values):
        parts = [f[k] if k != "seed" else f"seed {f[k]}" for k in varying if f[k]]
        parts += [f"{k.split('.', 1)[-1]}={v.get(k, '–')}" for k in changed[:most]]
        labels[r["run_id"]] = " · ".join(parts) or f"{f['scenario']} · seed {f['seed']}"
    if len(set(labels.values())) < len(labels):  # still ambiguous: add the run id's tail
        labels = {rid: f"{lab} · …{rid[-6:]}" for rid, lab in labels.items()}
    return labels


# --------------------------------------------------------------------------- utilisation


def utilisation(series: pd.DataFrame, window: float, robots: Sequence[int] | None = None,
                per_robot: bool = False) -> pd.DataFrame:
    """Where robots' time went in each window, from the cumulative ``robot_time_series``: rows
    ``(t, robot, state, seconds, share)``, ``t`` the window's end, summed over ``robots`` (all by
    default) unless ``per_robot``. Each window's shares sum to 1 per robot (or for the sum)."""
    cols = ["t", "robot", "state", "seconds", "share"]
    if series is None or series.empty:
        return pd.DataFrame(columns=cols)
    df = series if robots is None else series[series["robot"].isin(list(robots))]
    states = [s for s in STATES if s in df]
    times = np.sort(df["t"].unique())
    edges = [times[0]]
    for t in times[1:]:  # window ends on sample times, at least ``window`` apart (and the run's end)
        if t - edges[-1] >= window - 1e-9 or t == times[-1]:
            edges.append(t)
    at = df[df["t"].isin(edges)].sort_values(["robot", "t"])
    rows = []
    for robot, part in at.groupby("robot"):
        cum = part[states].to_numpy(float)
        diff = np.diff(np.vstack([np.zeros(len(states)), cum]), axis=0)
        for t, d in zip(part["t"], diff):
            for s, v in zip(states, d):
                rows.append((float(t), int(robot), s, max(float(v), 0.0)))
    out = pd.DataFrame(rows, columns=["t", "robot", "state", "seconds"])
    if out.empty:
        return pd.DataFrame(columns=cols)
    if not per_robot:
        out = out.groupby(["t", "state"], as_index=False)["seconds"].sum().assign(robot=-1)
    tot = out.groupby(["t", "robot"])["seconds"].transform("sum")
    out["share"] = np.where(tot > 0, out["seconds"] / tot.where(tot > 0, 1.0), 0.0)
    out["order"] = out["state"].map({s: i for i, s in enumerate(STATES)})
    return out.sort_values(["robot", "t", "order"]).drop(columns="order")[cols].reset_index(drop=True)


# --------------------------------------------------------------------------- network


def _bins(t: np.ndarray, window: float) -> np.ndarray:
    return np.floor(t / window) * window + window  # a bin is named by its end


def network_counts(flow: pd.DataFrame, window: float, t_end: float, by_role: bool = False) -> pd.DataFrame:
    """Messages per window (``t``: the window's end, capped at the run's end): ``sent``, ``delivered``
    and each ``drop:<reason>`` as columns (with ``pair``, 'robot → controller', if ``by_role``), plus
    ``dropped`` (all reasons) and ``loss`` (dropped over sent, NaN where nothing was sent)."""
    if flow is None or flow.empty:
        return pd.DataFrame(columns=["t", "pair", "sent", "delivered", "dropped", "loss"])
    df = flow.assign(t=np.minimum(_bins(flow["t"].to_numpy(float), window), t_end))
    df["pair"] = (df["src_role"].astype(str) + " → " + df["dst_role"].astype(str)) if by_role else "all"
    wide = df.pivot_table(index=["t", "pair"], columns="outcome", values="count", aggfunc="sum", fill_value=0)
    wide = wide.reset_index()
    wide.columns.name = None
    for c in ("sent", "delivered"):
        if c not in wide:
            wide[c] = 0
    drops = [c for c in wide.columns if str(c).startswith("drop:")]
    wide["dropped"] = wide[drops].sum(axis=1) if drops else 0
    wide["loss"] = np.where(wide["sent"] > 0, wide["dropped"] / wide["sent"].where(wide["sent"] > 0, 1), np.nan)
    return wide.sort_values(["pair", "t"]).reset_index(drop=True)


def network_latency(lat: pd.DataFrame, window: float, t_end: float, by_role: bool = False) -> pd.DataFrame:
    """End-to-end latency percentiles per window of send time: ``t``, ``pair``, ``p50``, ``p95``, ``p99``
    (milliseconds) and ``samples``."""
    cols = ["t", "pair", "p50", "p95", "p99", "samples"]
    if lat is None or lat.empty:
        return pd.DataFrame(columns=cols)
    df = lat.assign(t=np.minimum(_bins(lat["t"].to_numpy(float), window), t_end))
    df["pair"] = (df["src_role"].astype(str) + " → " + df["dst_role"].astype(str)) if by_role else "all"
    g = df.groupby(["t", "pair"])["latency"]
    out = g.quantile([0.5, 0.95, 0.99]).unstack() * 1e3
    out.columns = ["p50", "p95", "p99"]
    out["samples"] = g.size()
    return out.reset_index()[cols]


def link_delay_over_time(delays: pd.DataFrame, window: float, t_end: float) -> pd.DataFrame:
    """Per link and window of send time, the recorded one-way delay's p50/p95/p99 (ms)."""
    cols = ["t", "link", "p50", "p95", "p99", "samples"]
    if delays is None or delays.empty or "t" not in delays or delays["t"].isna().all():
        return pd.DataFrame(columns=cols)
    df = delays.dropna(subset=["t"])
    df = df.assign(t=np.minimum(_bins(df["t"].to_numpy(float), window), t_end),
                   link=df["src"].astype(str) + " → " + df["dst"].astype(str))
    g = df.groupby(["t", "link"])["delay"]
    out = g.quantile([0.5, 0.95, 0.99]).unstack() * 1e3
    out.columns = ["p50", "p95", "p99"]
    out["samples"] = g.size()
    return out.reset_index()[cols]


def used_network(run: dict, links: pd.DataFrame | None = None) -> bool:
    """Whether a run sent any message (a tick-tempo warehouse run has a topology but sends nothing)."""
    m = (run.get("summary") or {}).get("messages")
    if isinstance(m, dict) and "sent" in m:
        return int(m.get("sent") or 0) > 0
    return links is not None and not links.empty and int(links["sent"].fillna(0).sum()) > 0
