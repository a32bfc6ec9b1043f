"""The Capacity page's data: a sweep's figures shaped for charts and tables (no Streamlit).

A sweep (``desim sweep``) is a store run of kind ``sweep``: its ``config`` holds the
points (``{dotted.path: value}`` each), the replications, the first seed and the
headline metrics; its table ``sweep_points`` one row per (point, replication) with
every numeric summary figure by dotted key. :func:`desim.app.sweep.summarise`
gives each point's mean and confidence interval per metric, the saturation point
(the knee) and the findings; this module turns that into frames the page draws,
names the bottleneck from where robots' time goes (``robot_time_share.<state>``),
and pairs each point's replications with a baseline point's (common random
numbers: replication ``r`` ran with the same seed at every point) for
:func:`desim.analysis.paired_diff_ci`.
"""
from __future__ import annotations

import json
import math
from typing import Any, Sequence

import pandas as pd

from desim.analysis import paired_diff_ci
from desim.app.sweep import SWEEP_POINTS, rows_of, summarise, varied_paths as sweep_varied_paths
from desim.models.warehouse.tables import STATES, WAITING

__all__ = ["SWEEP_POINTS", "TIME_STATES", "WAIT_STATES", "bottlenecks", "config_of", "metric_frame",
           "metric_keys", "paired_table", "point_label", "points_table", "results_rows", "short", "summary",
           "time_shares", "varied_paths"]

TIME_STATES = STATES
"""What a robot does with its time (``robot_time_share.<state>``; the shares sum to 1): the warehouse's own list."""
WAIT_STATES = WAITING
"""The states that are not work: the largest of them is the bottleneck."""
SHARE = "robot_time_share."


def config_of(run: dict) -> dict:
    """A sweep run's config, with its name (what :func:`desim.app.sweep.summarise` takes)."""
    cfg = dict(run.get("config") or {})
    cfg["name"] = run.get("scenario") or cfg.get("name", "")
    cfg.setdefault("points", [])
    cfg.setdefault("paths", sorted({k for p in cfg["points"] for k in p}))
    cfg.setdefault("metrics", ["throughput_per_hour"])
    return cfg


def results_rows(results: pd.DataFrame) -> list[dict]:
    """The ``sweep_points`` rows as stored (params and metrics still JSON), sorted by point and replication."""
    if results is None or results.empty:
        return []
    recs = results.drop(columns=[c for c in ("run_id",) if c in results.columns]).to_dict("records")
    return sorted(recs, key=lambda r: (int(r["point"]), int(r["rep"])))


def summary(cfg: dict, run_id: str, results: list[dict], metrics: Sequence[str] | None = None,
            level: float = 0.95) -> dict:
    """:func:`desim.app.sweep.summarise` over ``metrics`` (default: the sweep's own; the sweep's first
    metric stays first, so the knee is the one ``desim report`` finds)."""
    own = list(cfg.get("metrics") or [])
    ms = list(dict.fromkeys(own[:1] + list(metrics if metrics is not None else own)))
    return summarise({**cfg, "metrics": ms}, run_id, results, level)


def metric_keys(results: list[dict], cfg: dict) -> list[str]:
    """Every numeric figure the sweep's runs recorded (dotted keys), the sweep's headline metrics first."""
    keys: set[str] = set()
    for r in results:
        m = json.loads(r["metrics"]) if isinstance(r.get("metrics"), str) else (r.get("metrics") or {})
        keys.update(k for k, v in m.items() if isinstance(v, (int, float)))
    own = [m for m in cfg.get("metrics", []) if m in keys or not results]
    return own + sorted(keys - set(own))


_GENERIC = {"mean", "jitter", "p", "r", "at", "duration", "factor", "rate", "period", "value"}


def short(path: str) -> str:
    """A dotted path's last part for labels (``warehouse.robots`` -> ``robots``); two parts where the
    last says little alone (``links.wireless.delay.mean`` -> ``delay.mean``)."""
    parts = path.split(".")
    return ".".join(parts[-2:]) if len(parts) > 1 and parts[-1] in _GENERIC else parts[-1]


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def point_label(params: dict, paths: Sequence[str]) -> str:
    return ", ".join(f"{short(p)}={_fmt(params.get(p))}" for p in paths) or "(base)"


def varied_paths(cfg: dict) -> list[str]:
    """The paths whose value differs between points (a grid's single-valued axes left out)."""
    return sweep_varied_paths(cfg.get("points") or [], list(cfg.get("paths", [])))


def _finite(v: Any) -> float | None:
    return float(v) if v is not None and isinstance(v, (int, float)) and math.isfinite(v) else None


def metric_frame(rep: dict, x: str, group: str | None = None) -> pd.DataFrame:
    """Long frame for the metric charts: one row per (point, metric) with the x value, the line it
    belongs to (``group``'s value; '' for a 1-D sweep), the mean and its interval (low/high None
    where there is none: one replication, or none finished yet)."""
    rows = []
    for pt in rep["points"]:
        for m, c in pt["metrics"].items():
            rows.append({"point": pt["point"], "x": pt["params"].get(x),
                         "line": "" if group is None else f"{short(group)}={_fmt(pt['params'].get(group))}",
                         "metric": m, "mean": _finite(c["mean"]), "low": _finite(c["low"]),
                         "high": _finite(c["high"]), "n": c["n"]})
    return pd.DataFrame(rows, columns=["point", "x", "line", "metric", "mean", "low", "high", "n"])


def points_table(rep: dict, paths: Sequence[str]) -> pd.DataFrame:
    """One row per point: its parameters, the replications finished, and per metric the mean and the
    interval's ends (``<metric> low`` / ``<metric> high``)."""
    rows = []
    for pt in rep["points"]:
        row: dict[str, Any] = {"point": pt["point"]}
        row.update({p: pt["params"].get(p) for p in paths})
        row["runs"] = pt["n"]
        for m, c in pt["metrics"].items():
            row[m] = _finite(c["mean"])
            row[f"{m} low"] = _finite(c["low"])
            row[f"{m} high"] = _finite(c["high"])
        rows.append(row)
    return pd.DataFrame(rows)


def time_shares(results: list[dict], cfg: dict, paths: Sequence[str]) -> pd.DataFrame:
    """Where robots' time goes: per point and state, the mean share (over replications) of
    ``robot_time_share.<state>`` (``tick``: the point's axis label, its value on a one-parameter
    sweep). Empty when the runs did not record it."""
    rows = rows_of(results)
    if not any(k.startswith(SHARE) for r in rows for k in r):
        return pd.DataFrame(columns=["point", "label", "tick", "state", "share", "order"])
    out = []
    for i, params in enumerate(cfg.get("points") or []):
        mine = [r for r in rows if r["point"] == i]
        if not mine:
            continue
        for j, s in enumerate(TIME_STATES):
            vals = [r[SHARE + s] for r in mine if isinstance(r.get(SHARE + s), (int, float))]
            out.append({"point": i, "label": point_label(params, paths),
                        "tick": _fmt(params.get(paths[0])) if len(paths) == 1 else point_label(params, paths),
                        "state": s, "share": sum(vals) / len(vals) if vals else 0.0, "order": j})
    return pd.DataFrame(out, columns=["point", "label", "tick", "state", "share", "order"])


def bottlenecks(shares: pd.DataFrame) -> pd.DataFrame:
    """Per point, the bottleneck: the largest share among the states that are not work
    (:data:`WAIT_STATES`), with the share robots spend working (moving, turning, loading)."""
    cols = ["point", "label", "bottleneck", "share", "working"]
    if shares.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for (point, label), g in shares.groupby(["point", "label"], sort=True):
        by = dict(zip(g["state"], g["share"]))
        worst = max(WAIT_STATES, key=lambda s: by.get(s, 0.0))
        out.append({"point": point, "label": label, "bottleneck": worst, "share": by.get(worst, 0.0),
                    "working": sum(by.get(s, 0.0) for s in TIME_STATES if s not in WAIT_STATES)})
    return pd.DataFrame(out, columns=cols)


def paired_table(results: list[dict], cfg: dict, base_point: int, metrics: Sequence[str],
                 paths: Sequence[str], level: float = 0.95) -> pd.DataFrame:
    """Every other point against ``base_point``, per metric: the difference (point - baseline) of
    the means over the replications both finished, paired by replication (the same seed in both:
    common random numbers), with its paired ``level`` interval, the unpaired (Welch) half width it
    replaces, and whether it is significant (the interval excludes 0)."""
    cols = ["point", "label", "metric", "baseline", "value", "difference", "low", "high", "relative",
            "unpaired ±", "pairs", "significant", "verdict"]
    rows = rows_of(results)
    base = {r["rep"]: r for r in rows if r["point"] == base_point}
    out = []
    for i, params in enumerate(cfg.get("points") or []):
        if i == base_point:
            continue
        mine = {r["rep"]: r for r in rows if r["point"] == i}
        reps = sorted(set(base) & set(mine))
        if not reps:
            continue
        for m in metrics:
            d = paired_diff_ci([base[k].get(m) for k in reps], [mine[k].get(m) for k in reps], level)
            if d.n == 0:
                continue
            has = d.n >= 2 and math.isfinite(d.half_width)
            out.append({"point": i, "label": point_label(params, paths), "metric": m, "baseline": _finite(d.mean_a),
                        "value": _finite(d.mean_b), "difference": _finite(d.mean),
                        "low": _finite(d.low) if has else None, "high": _finite(d.high) if has else None,
                        "relative": _finite(d.relative), "unpaired ±": _finite(d.unpaired_half_width),
                        "pairs": d.n, "significant": bool(d.significant) if has else None,
                        "verdict": ("significant" if d.significant else "not significant") if has
                        else "one pair: no interval"})
    return pd.DataFrame(out, columns=cols)
