"""Training runs grouped as TensorBoard and W&B group them, without Streamlit.

A group is the runs that differ only by seed: the same scenario, the same
algorithm and the same learner, env and training settings (hashed; the
requested length, device, file and seed are left out: a run asked for 50k
steps and one asked for 100k with the same settings are seeds of one curve).
Two scenarios never share a group, so neither do their curves nor their
per-agent credit. A run that did not finish (interrupted, failed, crashed) is
kept out of its group's mean and band, and drawn, when shown, as its own
dashed line marked with its status: a stopped 11k-step run must not count as a
seed of a 50k-step one.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

import numpy as np
import pandas as pd

from desim.dashboards.data import curve_bands

NOT_SETTINGS = ("seed", "steps", "requested_steps", "device", "file", "algo", "stand_in")  # not part of a group's identity
FINISHED = ("complete",)
LIVE = ("running",)


def flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict of dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``)."""
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def settings(run: dict) -> dict[str, Any]:
    """A training run's settings as dotted keys: its config without what does not define a group."""
    cfg = {k: v for k, v in (run.get("config") or {}).items() if k not in NOT_SETTINGS}
    return flat(cfg)


def config_hash(run: dict) -> str:
    """Six hex digits naming a run's settings (equal settings, equal hash)."""
    text = json.dumps(settings(run), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:6]


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    s = json.dumps(v, default=str) if not isinstance(v, str) else v
    return s if len(s) <= 24 else s[:21] + "…"


def algo_of(run: dict) -> str:
    return str((run.get("config") or {}).get("algo") or run.get("brain") or "?")


def group_runs(runs: Sequence[dict]) -> pd.DataFrame:
    """One row per training run: ``run_id``, ``group`` (a readable key), ``scenario``, ``algo``, ``hash``,
    ``differs`` (the settings that set this group apart from the other groups of the same scenario and
    algorithm, readably: ``actor_lr=0.001``), ``seed``, ``status`` and ``finished`` (counted in the mean)."""
    rows = []
    flat = {r["run_id"]: settings(r) for r in runs}
    for r in runs:
        rows.append({"run_id": r["run_id"], "scenario": str(r.get("scenario") or "?"), "algo": algo_of(r),
                     "hash": config_hash(r), "seed": r.get("seed"), "status": r.get("status"),
                     "finished": r.get("status") in FINISHED + LIVE})
    df = pd.DataFrame(rows, columns=["run_id", "scenario", "algo", "hash", "seed", "status", "finished"])
    differs = {}
    for (scen, algo), part in df.groupby(["scenario", "algo"]):
        hashes = part.drop_duplicates("hash")
        if len(hashes) < 2:
            for h in hashes["hash"]:
                differs[(scen, algo, h)] = ""
            continue
        keys = sorted(set().union(*(flat[r].keys() for r in hashes["run_id"])))
        varying = [k for k in keys if len({json.dumps(flat[r].get(k), default=str) for r in hashes["run_id"]}) > 1]
        for rid, h in zip(hashes["run_id"], hashes["hash"]):
            shown = [f"{k.split('.')[-1]}={_short(flat[rid].get(k))}" for k in varying if not k.startswith("env.")]
            if any(k.startswith("env.") for k in varying):
                shown.append("env differs")
            differs[(scen, algo, h)] = ", ".join(shown[:3]) + (" …" if len(shown) > 3 else "")
    df["differs"] = [differs.get((s, a, h), "") for s, a, h in zip(df["scenario"], df["algo"], df["hash"])]
    df["group"] = [f"{s} · {a} · {h}" + (f" ({d})" if d else "")
                   for s, a, h, d in zip(df["scenario"], df["algo"], df["hash"], df["differs"])]
    return df


def group_table(groups: pd.DataFrame) -> pd.DataFrame:
    """Per group: seeds counted (finished or running) and runs left out (their statuses)."""
    out = []
    for g, part in groups.groupby("group", sort=True):
        left = part[~part["finished"]]
        out.append({"group": g, "scenario": part["scenario"].iloc[0], "algo": part["algo"].iloc[0],
                    "config": part["hash"].iloc[0], "seeds": int(part["finished"].sum()),
                    "left out": ", ".join(f"{r} ({s})" for r, s in zip(left["run_id"], left["status"])) or ""})
    return pd.DataFrame(out, columns=["group", "scenario", "algo", "config", "seeds", "left out"])


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average with debiasing (``weight`` 0: none).
    The debiased average is pandas' adjusted EWM with ``alpha = 1 - weight``."""
    if weight <= 0 or values.size == 0:
        return values
    return pd.Series(values, dtype=float).ewm(alpha=1.0 - weight, adjust=True).mean().to_numpy()


def smoothed(curves: pd.DataFrame, weight: float, x: str = "step") -> pd.DataFrame:
    """Each run's each metric smoothed along ``x`` (one vectorised pass over all of them)."""
    if curves.empty or weight <= 0:
        return curves
    df = curves.sort_values(["run_id", "metric", x], kind="stable").reset_index(drop=True)
    df["value"] = (df.groupby(["run_id", "metric"], sort=False)["value"]
                   .transform(lambda s: s.ewm(alpha=1.0 - weight, adjust=True).mean()))
    return df


def group_bands(curves: pd.DataFrame, groups: pd.DataFrame, x: str = "step", band: str = "minmax",
                points: int = 200) -> pd.DataFrame:
    """Mean and band across the finished seeds of each group, per metric (columns as
    ``data.curve_bands``', with ``group`` in place of ``algo``)."""
    counted = groups.loc[groups["finished"], ["run_id", "group"]]
    df = curves.merge(counted, on="run_id")
    if df.empty:
        return pd.DataFrame(columns=["group", "metric", "x", "mean", "lo", "hi", "n"])
    b = curve_bands(df.assign(algo=df["group"]), x=x, band=band, points=points)
    return b.rename(columns={"algo": "group"})


def seed_lines(curves: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """Every run's own curve with its group, seed and status (for the seeds layer and the runs left out)."""
    df = curves.merge(groups[["run_id", "group", "seed", "status", "finished"]], on="run_id")
    df["line"] = [f"{r[-6:]} seed {s}" + ("" if f else f" ({st})")
                  for r, s, st, f in zip(df["run_id"], df["seed"], df["status"], df["finished"])]
    return df


def promotion_marks(promotions: pd.DataFrame, groups: pd.DataFrame, curves: pd.DataFrame,
                    x: str = "step") -> pd.DataFrame:
    """The rollback gate's decisions placed on the curves: one row per decision with its run's group,
    the x it happened at (env steps, or the wall time of the nearest logged step) and its decision."""
    cols = ["run_id", "group", "x", "step", "decision", "reason", "candidate_return"]
    if promotions is None or promotions.empty:
        return pd.DataFrame(columns=cols)
    p = promotions.merge(groups[["run_id", "group"]], on="run_id")
    if p.empty:
        return pd.DataFrame(columns=cols)
    if x == "step":
        p["x"] = p["step"].astype(float)
    else:
        xs = []
        for rid, step in zip(p["run_id"], p["step"]):
            c = curves[(curves["run_id"] == rid)].dropna(subset=["wall_s"])
            if c.empty:
                xs.append(np.nan)
                continue
            i = (c["step"] - step).abs().to_numpy().argmin()
            xs.append(float(c["wall_s"].iloc[i]))
        p["x"] = xs
    for c in cols:
        if c not in p:
            p[c] = None
    return p[cols]
