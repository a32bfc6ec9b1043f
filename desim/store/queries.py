"""Reading: runs (list, get, resolve), run tables, SQL, export.

Readers hold the catalog lock only long enough to copy the ``runs`` table,
then query in a private in-memory DuckDB where ``runs`` is that copy and each
run table is a view over ``read_parquet([<parts>], union_by_name=true)``, the
part files of the runs in that copy and of no other: parts on disk of a run the
catalog does not list (left from a deleted catalog, or from a writer that died
before its row was made) are never read, and a run that begins after the copy
is not seen either. ``run=`` narrows the copy, and so every table, to some runs.
A view is made only when parts exist; a declared table with no parts yet is an
empty view with its declared columns. So readers never hit "no files found", and
long queries never block writers.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence, Union

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from desim.store.catalog import StoreError, empty_view_sql, one_line, parquet_select, qi, show_path, sql_str
from desim.store.lifecycle import RunHandle, utcnow, with_effective_status
from desim.store.rows import jsonable, loads
from desim.store.schema import TABLES, check_table_name

__all__ = ["Queries", "LATEST", "EXPORT_FORMATS"]

_JSON_COLS = ("summary", "config", "tables")
LATEST = "latest"  # the run ref meaning the newest run by start time
EXPORT_FORMATS = ("parquet", "csv")


RunRefs = Union[str, RunHandle, Iterable[Union[str, RunHandle]]]
"""What ``run=`` takes: one run ref (an id, a unique prefix or suffix, ``latest``) or several."""


class _Snapshot(NamedTuple):
    runs: pa.Table  # the copy of ``runs`` a read sees (only the chosen runs)
    listed: list[str]  # every run the catalog lists
    selected: list[str]  # the runs the read is about (``listed`` itself when all)


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

    def resolve(self, ref: str) -> str:
        """Full run_id for ``ref``: a run id, ``latest`` (the newest run by start
        time), a unique prefix or a unique suffix. KeyError (one line) if no run
        or more than one run matches."""
        return self.get_run(ref)["run_id"]

    def get_run(self, run_id: str, *, _exact: bool = False) -> dict[str, Any]:
        """One run by id, ``latest``, or a unique prefix/suffix (see :meth:`resolve`);
        KeyError if unknown or ambiguous."""
        runs = self._runs_arrow()
        return _decode(runs.slice(self._find(runs, run_id, _exact), 1).to_pylist()[0])

    def _find(self, runs: pa.Table, run_id: Any, exact: bool = False) -> int:
        """The row of ``runs`` that the run ref ``run_id`` names (see :meth:`resolve`)."""
        if isinstance(run_id, RunHandle):
            run_id = run_id.run_id
        if not isinstance(run_id, str) or not run_id:
            raise KeyError(f"run_id must be a non-empty string, not {run_id!r}")
        ids = runs.column("run_id").to_pylist()
        where = show_path(self.path)
        if run_id in ids:  # an exact id wins, even a run named 'latest'
            return ids.index(run_id)
        if exact:
            raise KeyError(f"unknown run_id {run_id!r} in store {where}")
        if run_id == LATEST:
            if not ids:
                raise KeyError(f"no runs in store {where}, so no `latest` run")
            started = runs.column("started_at").to_pylist()
            return max(range(len(ids)), key=lambda i: (started[i] is not None, started[i] or 0, ids[i]))
        cand = [i for i, r in enumerate(ids) if r.startswith(run_id)]
        how = "prefix"
        if not cand:
            cand = [i for i, r in enumerate(ids) if r.endswith(run_id)]
            how = "suffix"
        if not cand:
            raise KeyError(f"no run matches {run_id!r} in store {where} ({len(ids)} runs)")
        if len(cand) > 1:
            cand.sort(key=lambda i: ids[i])
            shown = ", ".join(ids[i] for i in cand[:3]) + (", ..." if len(cand) > 3 else "")
            raise KeyError(f"run id {how} {run_id!r} is ambiguous: {len(cand)} runs match ({shown}); "
                           f"give more of the id, or `latest`")
        return cand[0]

    # ------------------------------------------------------------------ tables & SQL

    def _snapshot(self, run: RunRefs | None = None) -> _Snapshot:
        """One copy of the catalog's runs and the runs a read is about: all of
        them, or those ``run`` names (KeyError, one line, for a bad ref)."""
        runs = self._runs_arrow()
        listed = runs.column("run_id").to_pylist()
        if run is None:
            return _Snapshot(runs, listed, listed)
        refs = [run] if isinstance(run, (str, RunHandle)) or not isinstance(run, Iterable) else list(run)
        selected: list[str] = []
        for ref in refs:
            rid = listed[self._find(runs, ref)]
            if rid not in selected:
                selected.append(rid)
        if len(selected) < len(listed):
            runs = runs.filter(pc.is_in(runs.column("run_id"), value_set=pa.array(selected, type=pa.string())))
        return _Snapshot(runs, listed, selected)

    def _table_names(self, snap: _Snapshot) -> list[str]:
        return sorted(set(TABLES) | self._parts.tables(snap.listed))

    def table_names(self) -> list[str]:
        """Declared tables plus any table that has parts of a run the catalog lists."""
        return self._table_names(self._snapshot())

    def _view_sql(self, name: str, snap: _Snapshot) -> str | None:
        """The SELECT behind the reader's view of ``name``: the parts of the chosen
        runs only (never those of runs the catalog does not list); None for no view."""
        files = self._parts.files(name, snap.selected)  # listed per run: no glob over the whole folder
        if files:
            return parquet_select(files=files)
        if name in TABLES:
            return empty_view_sql(name)
        others = self._parts.files(name, snap.listed)
        if others:  # parts of listed runs, but not of these: their columns, no rows
            return parquet_select(files=others) + " LIMIT 0"
        return None

    def _reader(self, snap: _Snapshot, tables: Iterable[str]) -> duckdb.DuckDBPyConnection:
        """In-memory connection with ``runs`` (the snapshot's copy) and one view per run table."""
        con = self._cursor()
        try:
            con.register("runs", snap.runs)
            for name in tables:
                sql = self._view_sql(name, snap)
                if sql is not None:
                    con.execute(f"CREATE TEMP VIEW {qi(name)} AS {sql}")
        except BaseException:
            con.close()
            raise
        return con

    def table(self, name: str, run_ids: RunRefs | None = None, *,
              as_dicts: bool = False) -> pa.Table | list[dict[str, Any]]:
        """All rows of a run table (optionally for some runs: ids, unique prefixes or
        suffixes, ``latest``), as a pyarrow Table (or a list of dicts). Only runs the
        catalog lists are read. Declared tables with no rows give an empty table with
        their columns; unknown names raise KeyError."""
        check_table_name(name)
        snap = self._snapshot(run_ids)
        if name not in TABLES and not self._parts.files(name, snap.listed):
            raise KeyError(f"no table {name!r} in store {self.path}; have {self._table_names(snap)}")
        con = self._reader(snap, tables=[name])
        try:
            tbl = con.sql(f"SELECT * FROM {qi(name)}").to_arrow_table()
        finally:
            con.close()
        return tbl.to_pylist() if as_dicts else tbl

    def _mentioned(self, sql: str, snap: _Snapshot) -> list[str]:
        """Run tables named in ``sql`` (binding a view reads every part footer, so
        only the tables a query may use get one)."""
        words = {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql)}
        return [n for n in self._table_names(snap) if n.lower() in words]

    def _sql_reader(self, sql: str, run: RunRefs | None) -> duckdb.DuckDBPyConnection:
        snap = self._snapshot(run)
        return self._reader(snap, tables=self._mentioned(sql, snap))

    def query_arrow(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None, *,
                    run: RunRefs | None = None) -> pa.Table:
        """Run SQL over ``runs`` and every run table (by name); return a pyarrow Table.

        The SQL sees only runs the catalog lists (one copy of it, taken when the
        query starts). ``run``: a run ref (an id, a unique prefix or suffix,
        ``latest``, a :class:`RunHandle`) or a list of them; then ``runs`` and every
        run table hold only those runs' rows (``run_id`` stays a column), so
        ``query("SELECT outcome, count(*) FROM cs_requests GROUP BY 1", run=rid)``
        counts one run's rows however many the store holds. A bad ref: KeyError (one line).
        """
        con = self._sql_reader(sql, run)
        try:
            return con.sql(sql, params=params).to_arrow_table() if params else con.sql(sql).to_arrow_table()
        finally:
            con.close()

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None, *,
              run: RunRefs | None = None) -> list[dict[str, Any]]:
        """Like :meth:`query_arrow` (the same ``run``), returning a list of dicts."""
        con = self._sql_reader(sql, run)
        try:
            rel = con.execute(sql, params) if params else con.execute(sql)
            if rel.description is None:
                return []
            cols = [d[0] for d in rel.description]
            return [dict(zip(cols, r)) for r in rel.fetchall()]
        finally:
            con.close()

    def export(self, run_id: str, out_dir: str | os.PathLike, fmt: str = "parquet", *,
               overwrite: bool = False) -> list[Path]:
        """Export one run into ``out_dir/<run_id>/``: ``run.json`` (its catalog row:
        config, summary, tables, status, ...) and one ``<table>.parquet`` or
        ``<table>.csv`` per table that has rows for the run. Return the paths.

        ``run_id``: an id, ``latest`` or a unique prefix/suffix. One folder per
        run, so exporting several runs into one ``out_dir`` keeps them all. A run
        folder that already holds files is refused (:class:`StoreError`) unless
        ``overwrite`` (then files of the same name are replaced, others kept).
        ``out_dir`` being a file is a :class:`StoreError`; an unknown ``fmt`` a
        ValueError. Files are written under temporary names and renamed into
        place only once all are written, so a failed export leaves no half files.
        """
        if fmt not in EXPORT_FORMATS:
            raise ValueError(f"export format must be one of {EXPORT_FORMATS}, not {fmt!r}")
        run_id = self.resolve(run_id)
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise StoreError(f"export folder {show_path(out)} is a file, not a folder")
        dest = out / run_id
        if dest.exists() and not dest.is_dir():
            raise StoreError(f"export folder {show_path(dest)} is a file, not a folder")
        if dest.is_dir() and not overwrite:
            have = sorted(p.name for p in dest.iterdir())
            if have:
                raise StoreError(f"export folder {show_path(dest)} already holds {len(have)} file(s) "
                                 f"({', '.join(have[:3])}{', ...' if len(have) > 3 else ''}); "
                                 f"not overwriting an earlier export of run {run_id}")
        return self._export_files(run_id, dest, fmt, run_file="run.json")

    def export_parquet(self, run_id: str, out_dir: str | os.PathLike) -> list[Path]:
        """The old export: ``run.parquet`` (the runs row) and one ``<table>.parquet``
        per table with rows for the run, straight into ``out_dir`` (replacing files
        of the same name). Prefer :meth:`export` (one folder per run, ``run.json``)."""
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise StoreError(f"export folder {show_path(out)} is a file, not a folder")
        return self._export_files(self.resolve(run_id), out, "parquet", run_file="run.parquet")

    def _export_files(self, run_id: str, dest: Path, fmt: str, run_file: str) -> list[Path]:
        """Write the run row and the run's tables into a staging folder next to
        ``dest``, then move them into ``dest``; nothing is left behind on failure."""
        created: list[Path] = []  # folders this export made (removed again on failure)
        for d in reversed([dest, *dest.parents]):
            if not d.exists():
                try:
                    d.mkdir()
                except FileExistsError:
                    if not d.is_dir():
                        self._remove_empty(created)
                        raise StoreError(f"export folder {show_path(d)} is a file, not a folder") from None
                    continue
                except OSError as e:
                    self._remove_empty(created)
                    raise StoreError(f"export folder {show_path(d)} cannot be created: "
                                     f"{one_line(e.strerror or e)}") from None
                created.append(d)
            elif not d.is_dir():
                self._remove_empty(created)
                raise StoreError(f"export folder {show_path(d)} is a file, not a folder")
        stage = dest.parent / f".{dest.name}.export-{os.getpid()}-{secrets.token_hex(4)}.tmp"
        moved: list[Path] = []
        new: list[Path] = []  # moved files that did not exist before (removed on failure)
        try:
            stage.mkdir()
            names: list[str] = []
            if run_file.endswith(".json"):
                row = self.get_run(run_id, _exact=True)
                (stage / run_file).write_text(json.dumps(jsonable(row), indent=2, sort_keys=True) + "\n")
            else:
                runs = self._runs_arrow()
                pq.write_table(runs.filter(pc.equal(runs.column("run_id"), run_id)), stage / run_file)
            names.append(run_file)
            for name in self._table_names(self._snapshot()):
                files = self._parts.files(name, [run_id])  # a listed run (resolved): its parts only
                if not files:
                    continue
                fname = f"{name}.{fmt}"
                con = self._cursor()
                try:
                    if fmt == "parquet":
                        pq.write_table(con.sql(parquet_select(files=files)).to_arrow_table(), stage / fname)
                    else:
                        con.execute(f"COPY ({parquet_select(files=files)}) TO {sql_str(str(stage / fname))} "
                                    f"(FORMAT csv, HEADER true)")
                finally:
                    con.close()
                names.append(fname)
            for fname in names:  # every file is whole: now move them into place
                existed = (dest / fname).exists()
                os.replace(stage / fname, dest / fname)
                moved.append(dest / fname)
                if not existed:
                    new.append(dest / fname)
        except BaseException:
            for p in new:  # an overwritten file keeps its (whole) new version; new files go
                with contextlib.suppress(OSError):
                    p.unlink()
            shutil.rmtree(stage, ignore_errors=True)
            self._remove_empty(created)
            raise
        with contextlib.suppress(OSError):
            stage.rmdir()
        return moved

    @staticmethod
    def _remove_empty(folders: list[Path]) -> None:
        for d in reversed(folders):
            with contextlib.suppress(OSError):
                d.rmdir()
