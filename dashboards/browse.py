"""The Tables page's shaping and the Runs page's figures, without Streamlit: any model's runs.

A run lists the tables it stored in its catalog row (``tables``: ``{name: {"parts": n, "rows": m}}``,
set when it finishes; a run still writing is counted from its parts). :func:`run_tables` turns that
into the page's list; :func:`filter_rows` is the page's filter (a column's range or values, a text in
a column, a text anywhere in the string columns); :func:`to_csv` what its download button sends.

:func:`summary_figures` flattens a run's summary into every numeric figure by dotted key
(``response_time.p50``), whatever the model: the Runs page compares runs on any of them.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import pandas as pd

from desim.dashboards.groups import flat

FEW_VALUES = 30  # a text column with at most this many distinct values is filtered by picking values
PREVIEW_ROWS = (10, 50, 100, 500, 1000, 5000)

# the Runs page's default comparison: the warehouse's and training's headline figures, where the runs have them
DEFAULT_FIGURES = ("throughput_per_hour", "deliveries", "order_latency.p95", "deadlocks", "collisions",
                   "final_return", "steps")
# figures every simulation run has (the kernel's and the network's): not a model's own headline
_COMMON_FIGURES = ("sim_time", "events", "retries")
_COMMON_PREFIXES = ("messages.", "jitter_buffer.")
_NOT_FIGURES = ("seed",)


# --------------------------------------------------------------------------- a run's tables


def run_tables(tables: dict | None) -> pd.DataFrame:
    """A run's stored tables (``{name: {"rows": m, ...}}``) as rows ``(table, rows)``, by name; tables
    with no rows are left out."""
    rows = [{"table": name, "rows": int((info or {}).get("rows") or 0)} for name, info in (tables or {}).items()]
    df = pd.DataFrame(rows, columns=["table", "rows"])
    return df[df["rows"] > 0].sort_values("table").reset_index(drop=True)


def column_kind(s: pd.Series) -> str:
    """How the page filters a column: ``number`` (a range), ``bool`` or ``text`` (values, or a text
    it contains)."""
    if pd.api.types.is_bool_dtype(s):
        return "bool"
    if pd.api.types.is_numeric_dtype(s):
        return "number"
    return "text"


def columns_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Per column: its type, how many rows have a value, distinct values, and the range of a number."""
    rows = []
    for c in df.columns:
        s = df[c]
        kind = column_kind(s)
        num = kind == "number" and s.notna().any()
        rows.append({"column": c, "type": str(s.dtype), "values": int(s.notna().sum()), "distinct": int(s.nunique()),
                     "min": float(s.min()) if num else None, "max": float(s.max()) if num else None})
    return pd.DataFrame(rows, columns=["column", "type", "values", "distinct", "min", "max"])


def distinct_values(s: pd.Series, most: int = FEW_VALUES) -> list | None:
    """A column's distinct values (sorted, missing left out) when there are at most ``most``, else None."""
    vals = s.dropna().unique()
    if len(vals) > most:
        return None
    try:
        return sorted(vals.tolist())
    except TypeError:
        return sorted(vals.tolist(), key=str)


def _text(s: pd.Series) -> pd.Series:
    return s.astype("string").fillna("")


def filter_rows(df: pd.DataFrame, column: str | None = None, *, lo: float | None = None, hi: float | None = None,
                values: Sequence | None = None, contains: str | None = None, search: str | None = None) -> pd.DataFrame:
    """The rows of ``df`` that pass the filter:

    - on ``column``: ``lo <= value <= hi`` (either bound may be None; a row with no value fails a bound),
      ``values`` (the value is one of them), ``contains`` (the text of the value holds it, case ignored);
    - ``search``: some text column holds it (case ignored).

    Empty or None parts of the filter filter nothing."""
    mask = pd.Series(True, index=df.index)
    if column is not None and column in df.columns:
        s = df[column]
        if lo is not None:
            mask &= s >= lo
        if hi is not None:
            mask &= s <= hi
        if values:
            mask &= s.isin(list(values))
        if contains:
            mask &= _text(s).str.contains(contains, case=False, regex=False)
    if search:
        texts = [c for c in df.columns if column_kind(df[c]) == "text"]
        hit = pd.Series(False, index=df.index)
        for c in texts:
            hit |= _text(df[c]).str.contains(search, case=False, regex=False)
        mask &= hit
    return df[mask.fillna(False).astype(bool)]


def to_csv(df: pd.DataFrame) -> bytes:
    """The rows as CSV (a header line, no index), UTF-8: what the download button sends."""
    return df.to_csv(index=False).encode("utf-8")


def file_name(run_id: str, table: str, filtered: bool = False) -> str:
    return f"{run_id}-{table}{'-filtered' if filtered else ''}.csv"


# --------------------------------------------------------------------------- figures in summaries


def summary_figures(summary: dict | None) -> dict[str, float]:
    """Every numeric figure of a run's summary by dotted key (``{"response_time": {"p50": 0.06}}``
    -> ``{"response_time.p50": 0.06}``, as ``groups.flat`` writes them); booleans, texts, lists and the
    seed are left out."""
    return {k: float(v) for k, v in flat(summary or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in _NOT_FIGURES}


def figures_frame(runs: Iterable[dict]) -> pd.DataFrame:
    """One row per run: ``run_id`` and every numeric figure of its summary (dotted keys; a figure one
    run lacks is empty there)."""
    rows = [{"run_id": r["run_id"], **summary_figures(r.get("summary"))} for r in runs]
    return pd.DataFrame(rows)


def figure_keys(frame: pd.DataFrame) -> list[str]:
    """The figures to offer, the default comparison's first, then the rest by name."""
    keys = [c for c in frame.columns if c != "run_id" and frame[c].notna().any()]
    first = [k for k in DEFAULT_FIGURES if k in keys]
    return first + sorted(set(keys) - set(first))


def default_figures(keys: Sequence[str], most: int = 6) -> list[str]:
    """The figures compared by default: the warehouse's and training's headline figures among ``keys``;
    for other models, their own figures (not the kernel's or the network's counts) first."""
    first = [k for k in DEFAULT_FIGURES if k in keys]
    if first:
        return first

    def common(k: str) -> bool:
        return k in _COMMON_FIGURES or k.startswith(_COMMON_PREFIXES) or k.endswith("wall_s")

    own = [k for k in keys if not common(k)]
    return (own or list(keys))[:most]
