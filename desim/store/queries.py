"""Reading: runs (list, get, resolve), run tables, SQL, export.

Readers hold the catalog lock only long enough to copy the ``runs`` table,
then query in a private in-memory DuckDB where ``runs`` is that copy and each
run table is a view over ``read_parquet(<parts>, union_by_name=true)``. A view
is made only when parts exist; a declared table with no parts yet is an empty
view with its declared columns. So readers never hit "no files found", and
long queries never block writers.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from desim.store.catalog import empty_view_sql, parquet_select, qi
from desim.store.lifecycle import utcnow, with_effective_status
from desim.store.rows import loads
from desim.store.schema import TABLES, check_table_name

__all__ = ["Queries"]

_JSON_COLS = ("summary", "config", "tables")


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for c in _JSON_COLS:
        if c in row:
            row[c] = loads(row[c])
    s, f = row.get("started_at"), row.get("finished_at")
    if s is not None:
        row["duration_s"] = ((f or utcnow()) - s).total_seconds()
    return row


class Queries:
    """The :class:`~desim.store.Store` methods that read. Uses the store's
    ``_catalog``, ``_parts`` and ``_cursor``."""

    # ------------------------------------------------------------------ runs

    def _runs_arrow(self) -> pa.Table:
        """Copy of the runs table with the effective status (the lock is held only briefly)."""
        return with_effective_status(self._catalog.runs_table())

    def list_runs(self, kind: str | None = None, limit: int | None = None,
                  status: str | None = None) -> list[dict[str, Any]]:
        """Runs, newest first, as dicts (summary/config/tables decoded; a dead
        writer's 'running' run shows as 'crashed', see ``stored_status``)."""
        sql = "SELECT * FROM runs"
        where, params = [], []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, run_id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        con = self._cursor()
        try:
            con.register("runs", self._runs_arrow())
            rel = con.execute(sql, params)
            cols = [d[0] for d in rel.description]
            return [_decode(dict(zip(cols, r))) for r in rel.fetchall()]
        finally:
            con.close()

    def resolve(self, run_id: str) -> str:
        """Full run_id for an id or a unique prefix (or unique hex suffix)."""
        return self.get_run(run_id)["run_id"]

    def get_run(self, run_id: str, *, _exact: bool = False) -> dict[str, Any]:
        """One run by id or unique prefix; KeyError if unknown or ambiguous."""
        if not isinstance(run_id, str) or not run_id:
            raise KeyError(f"run_id must be a non-empty string, not {run_id!r}")
        runs = self._runs_arrow()
        ids = runs.column("run_id").to_pylist()
        if run_id in ids:
            idx = ids.index(run_id)
        elif _exact:
            raise KeyError(f"unknown run_id {run_id!r} in store {self.path}")
        else:
            cand = [i for i, r in enumerate(ids) if r.startswith(run_id)]
            if not cand:
                cand = [i for i, r in enumerate(ids) if r.endswith(run_id)]
            if not cand:
                raise KeyError(f"no run matches {run_id!r} in store {self.path} ({len(ids)} runs)")
            if len(cand) > 1:
                shown = ", ".join(ids[i] for i in cand[:5]) + (", ..." if len(cand) > 5 else "")
                raise KeyError(f"run id prefix {run_id!r} is ambiguous: {len(cand)} runs match ({shown})")
            idx = cand[0]
        return _decode(runs.slice(idx, 1).to_pylist()[0])

    # ------------------------------------------------------------------ tables & SQL

    def table_names(self) -> list[str]:
        """Declared tables plus any table that has parts."""
        return sorted(set(TABLES) | self._parts.tables())

    def _reader(self, run_ids: Sequence[str] | None = None,
                tables: Iterable[str] | None = None) -> duckdb.DuckDBPyConnection:
        """In-memory connection with ``runs`` (a copy) and one view per run table."""
        con = self._cursor()
        try:
            con.register("runs", self._runs_arrow())
            for name in (tables if tables is not None else self.table_names()):
                files = self._parts.files(name, run_ids)
                if files:
                    sql = (parquet_select(files=files) if run_ids is not None
                           else parquet_select(files_glob=self._parts.glob(name)))
                elif name in TABLES:
                    sql = empty_view_sql(name)
                elif self._parts.files(name):  # parts, but not for these runs
                    sql = parquet_select(files_glob=self._parts.glob(name)) + " LIMIT 0"
                else:
                    continue
                con.execute(f"CREATE TEMP VIEW {qi(name)} AS {sql}")
        except BaseException:
            con.close()
            raise
        return con

    def table(self, name: str, run_ids: str | Sequence[str] | None = None, *,
              as_dicts: bool = False) -> pa.Table | list[dict[str, Any]]:
        """All rows of a run table (optionally for some runs; ids or prefixes),
        as a pyarrow Table (or a list of dicts). Declared tables with no rows give
        an empty table with their columns; unknown names raise KeyError."""
        check_table_name(name)
        if isinstance(run_ids, str):
            run_ids = [run_ids]
        ids = None if run_ids is None else [self.resolve(r) for r in run_ids]
        if name not in TABLES and not self._parts.files(name):
            raise KeyError(f"no table {name!r} in store {self.path}; have {self.table_names()}")
        con = self._reader(ids, tables=[name])
        try:
            tbl = con.sql(f"SELECT * FROM {qi(name)}").to_arrow_table()
        finally:
            con.close()
        return tbl.to_pylist() if as_dicts else tbl

    def _mentioned(self, sql: str) -> list[str]:
        """Run tables named in ``sql`` (binding a view reads every part footer, so
        only the tables a query may use get one)."""
        words = {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql)}
        return [n for n in self.table_names() if n.lower() in words]

    def query_arrow(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pa.Table:
        """Run SQL over ``runs`` and every run table (by name); return a pyarrow Table."""
        con = self._reader(tables=self._mentioned(sql))
        try:
            return con.sql(sql, params=params).to_arrow_table() if params else con.sql(sql).to_arrow_table()
        finally:
            con.close()

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Like :meth:`query_arrow`, returning a list of dicts."""
        con = self._reader(tables=self._mentioned(sql))
        try:
            rel = con.execute(sql, params) if params else con.execute(sql)
            if rel.description is None:
                return []
            cols = [d[0] for d in rel.description]
            return [dict(zip(cols, r)) for r in rel.fetchall()]
        finally:
            con.close()

    def export_parquet(self, run_id: str, out_dir: str | os.PathLike) -> list[Path]:
        """Write ``run.parquet`` (the runs row) and one ``<table>.parquet`` per
        table that has rows for the run into ``out_dir``; return the paths."""
        run_id = self.resolve(run_id)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        runs = self._runs_arrow()
        p = out / "run.parquet"
        pq.write_table(runs.filter(pc.equal(runs.column("run_id"), run_id)), p)
        paths.append(p)
        for name in self.table_names():
            files = self._parts.files(name, [run_id])
            if not files:
                continue
            con = self._cursor()
            try:
                tbl = con.sql(parquet_select(files=files)).to_arrow_table()
            finally:
                con.close()
            p = out / f"{name}.parquet"
            tmp = out / f".{name}.parquet.tmp"
            pq.write_table(tbl, tmp)
            os.replace(tmp, p)
            paths.append(p)
        return paths
