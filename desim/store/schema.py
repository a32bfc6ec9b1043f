"""Table declarations: each run table's schema, declared by the code that writes its rows.

The store hard-codes no table. A producer declares its tables once, at import::

    from desim.store import declare_table
    declare_table("timeseries", {"t": pa.float64(), "metric": pa.string(), "value": pa.float64()},
                  required=("t", "metric", "value"))

An append to a declared table is cast to its column types (missing columns
become nulls, extra columns are kept), and must carry its ``required``
columns. A table nobody declared takes whatever columns it is given. A
reader sees an empty typed view of a declared table that has no rows yet.

Two producers may share a table (the warehouse and the network both write
``events``): declaring the same schema again is fine, a different one raises.
"""
from __future__ import annotations

import re
import threading
import types
from dataclasses import dataclass
from typing import Iterable, Mapping

import pyarrow as pa

__all__ = ["TableSchema", "declare_table", "table_schema", "TABLES", "check_table_name", "duck_type"]

RESERVED = frozenset({"runs", "_meta"})
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

# Arrow types a declaration may use, with their DuckDB names (for empty typed views).
_DUCK_TYPES: dict[pa.DataType, str] = {
    pa.float64(): "DOUBLE",
    pa.float32(): "FLOAT",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.int16(): "SMALLINT",
    pa.int8(): "TINYINT",
    pa.bool_(): "BOOLEAN",
    pa.string(): "VARCHAR",
    pa.timestamp("us"): "TIMESTAMP",
}


def duck_type(typ: pa.DataType) -> str:
    return _DUCK_TYPES[typ]


def check_table_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or name.lower() in RESERVED:
        raise ValueError(
            f"invalid table name {name!r}: use letters, digits and '_' (not starting with a digit), "
            f"not one of {sorted(RESERVED)}"
        )
    return name


@dataclass(frozen=True)
class TableSchema:
    """A run table's columns (besides ``run_id``, which comes first) and the ones
    every append must provide. ``columns=None``: any columns (declared only so
    readers know the name)."""

    name: str
    columns: Mapping[str, pa.DataType] | None = None
    required: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_table_name(self.name)
        if self.columns is not None:
            cols = dict(self.columns)
            for col, typ in cols.items():
                if not isinstance(col, str) or not col or col == "run_id":
                    raise ValueError(f"table {self.name!r}: invalid column name {col!r}")
                if typ not in _DUCK_TYPES:
                    raise ValueError(f"table {self.name!r}: column {col!r} has unsupported type {typ} "
                                     f"(use one of {sorted(map(str, _DUCK_TYPES))})")
            object.__setattr__(self, "columns", types.MappingProxyType(cols))
        req = tuple(self.required)
        if self.columns is not None:
            unknown = [c for c in req if c not in self.columns]
            if unknown:
                raise ValueError(f"table {self.name!r}: required columns {unknown} are not declared")
        object.__setattr__(self, "required", req)

    def same_as(self, other: "TableSchema") -> bool:
        mine = None if self.columns is None else list(self.columns.items())
        theirs = None if other.columns is None else list(other.columns.items())
        return self.name == other.name and mine == theirs and self.required == other.required


_REGISTRY: dict[str, TableSchema] = {}
_GUARD = threading.Lock()
TABLES: Mapping[str, TableSchema] = types.MappingProxyType(_REGISTRY)
"""Every declared table, by name (read-only, live)."""


def declare_table(name: str, columns: Mapping[str, pa.DataType] | None = None,
                  required: Iterable[str] = ()) -> TableSchema:
    """Declare a run table's schema (see the module docstring). Declaring the
    same schema again returns the existing declaration; a different one for a
    declared name raises ValueError."""
    schema = TableSchema(name, columns, tuple(required))
    with _GUARD:
        have = _REGISTRY.get(name)
        if have is not None:
            if not have.same_as(schema):
                raise ValueError(f"table {name!r} is already declared with another schema: "
                                 f"{_describe(have)}; not {_describe(schema)}")
            return have
        _REGISTRY[name] = schema
    return schema


def table_schema(name: str) -> TableSchema | None:
    """The declaration of ``name``, or None (an undeclared table takes any columns)."""
    return _REGISTRY.get(name)


def _describe(s: TableSchema) -> str:
    cols = "any columns" if s.columns is None else ", ".join(f"{c} {t}" for c, t in s.columns.items())
    return f"({cols}; required {list(s.required)})"
