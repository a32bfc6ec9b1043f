"""Row conversion: what callers append (dicts of columns, lists of dicts, Arrow)
becomes an Arrow table conformed to its table's declared schema; JSON helpers
for the catalog's JSON columns. No I/O here."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
from typing import Any, Mapping

import pyarrow as pa

from desim.store.schema import TableSchema

__all__ = ["rows_to_table", "conform", "jsonable", "dumps", "loads"]


def jsonable(obj: Any) -> Any:
    """Make config/summary objects JSON-safe (numpy, pydantic, dataclasses, paths, NaN)."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((jsonable(v) for v in obj), key=repr)
    if hasattr(obj, "model_dump"):  # pydantic v2
        return jsonable(obj.model_dump(mode="json"))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return jsonable(obj.tolist())
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def dumps(obj: Any) -> str | None:
    if obj is None:
        return None
    return json.dumps(jsonable(obj), sort_keys=True, allow_nan=False)


def loads(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _to_json_text(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    return json.dumps(jsonable(v), sort_keys=True)


def _column_to_arrow(name: str, col: Any, n: int | None) -> pa.Array | pa.ChunkedArray:
    if isinstance(col, (pa.Array, pa.ChunkedArray)):
        return col
    if hasattr(col, "ndim") and hasattr(col, "dtype"):  # numpy
        if col.ndim == 0:
            col = col.item()
        elif col.ndim != 1:
            raise ValueError(f"column {name!r}: expected a 1-D array, got shape {col.shape}")
        else:
            return pa.array(col)
    if isinstance(col, (str, bytes, int, float, bool)) or col is None:
        if n is None:
            raise ValueError(f"column {name!r} is a scalar but no column gives the row count")
        return pa.array([col] * n)
    col = list(col)
    if any(isinstance(x, Mapping) for x in col):  # dict cells -> JSON text
        return pa.array([_to_json_text(x) for x in col], type=pa.string())
    return pa.array(col)


def rows_to_table(rows: Any) -> pa.Table:
    """A dict of equal-length columns (lists or 1-D numpy arrays; scalars are
    repeated), a list of dicts, or a pyarrow Table/RecordBatch, as a pyarrow Table."""
    if isinstance(rows, pa.Table):
        return rows
    if isinstance(rows, pa.RecordBatch):
        return pa.Table.from_batches([rows])
    if isinstance(rows, Mapping):
        lengths = {}
        for k, v in rows.items():
            if isinstance(v, (str, bytes, int, float, bool)) or v is None:
                continue
            if hasattr(v, "ndim") and getattr(v, "ndim", 1) == 0:
                continue
            lengths[k] = len(v)
        if len(set(lengths.values())) > 1:
            raise ValueError(f"columns have different lengths: {lengths}")
        n = next(iter(lengths.values())) if lengths else None
        if n is None and rows:
            n = 1  # all scalars: one row
        arrays = {}
        for k, v in rows.items():
            try:
                arrays[str(k)] = _column_to_arrow(str(k), v, n)
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed cells (e.g. dicts and lists) -> JSON text
                arrays[str(k)] = pa.array([_to_json_text(x) for x in v], type=pa.string())
        return pa.table(arrays)
    if isinstance(rows, (list, tuple)):
        if not rows:
            return pa.table({})
        if not all(isinstance(r, Mapping) for r in rows):
            raise TypeError("a list of rows must hold dicts")
        keys: dict[str, None] = {}
        for r in rows:
            for k in r:
                keys.setdefault(str(k), None)
        cols = {k: [r.get(k) for r in rows] for k in keys}
        return rows_to_table(cols)
    raise TypeError(
        f"rows must be a dict of columns, a list of dicts or a pyarrow Table, not {type(rows).__name__}"
    )


def _cast(table: str, col: str, arr: pa.Array | pa.ChunkedArray, typ: pa.DataType, n: int):
    if arr.type == typ:
        return arr
    try:
        if pa.types.is_null(arr.type):
            return pa.nulls(n, typ)
        if typ == pa.string() and not (
            pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)
            or pa.types.is_boolean(arr.type) or pa.types.is_large_string(arr.type)
            or pa.types.is_dictionary(arr.type)
        ):  # structs, lists ... -> JSON text
            return pa.array([_to_json_text(x) for x in arr.to_pylist()], type=pa.string())
        return arr.cast(typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        raise ValueError(f"table {table!r}: column {col!r} of type {arr.type} can't become {typ}: {e}") from None


def conform(table_name: str, tbl: pa.Table, run_id: str, schema: TableSchema | None) -> pa.Table:
    """Put ``run_id`` first (rows may carry it only if it is this run's); cast to
    the declared schema, if any: required columns must be there, missing ones
    become nulls, extra ones are kept after the declared ones."""
    if "run_id" in tbl.column_names:
        ids = set(tbl.column("run_id").to_pylist())
        if ids - {run_id, None}:
            raise ValueError(f"rows carry run_id(s) {sorted(map(str, ids))} but are appended to {run_id!r}")
        tbl = tbl.drop_columns(["run_id"])
    n = tbl.num_rows
    if schema is not None:
        missing = [c for c in schema.required if c not in tbl.column_names]
        if missing:
            raise ValueError(f"table {table_name!r} needs columns {list(schema.required)}; missing {missing}")
    if schema is not None and schema.columns is not None:
        cols: dict[str, pa.ChunkedArray | pa.Array] = {}
        for col, typ in schema.columns.items():
            if col in tbl.column_names:
                cols[col] = _cast(table_name, col, tbl.column(col), typ, n)
            else:
                cols[col] = pa.nulls(n, typ)
        for col in tbl.column_names:
            if col not in cols:
                cols[col] = tbl.column(col)
        tbl = pa.table(cols)
    return tbl.add_column(0, "run_id", pa.array([run_id] * n, type=pa.string()))
