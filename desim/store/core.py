"""The :class:`Store`: one catalog, one parts folder, and ``append``, which ties
rows, parts and the catalog together. Run writing and reading are the
:class:`~desim.store.lifecycle.RunLifecycle` and :class:`~desim.store.queries.Queries`
methods it inherits."""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pyarrow as pa

from desim.store.catalog import (Catalog, StoreError, check_store_file, empty_view_sql, listed_parts_sql, qi,
                                 show_path)
from desim.store.lifecycle import RunLifecycle, check_run_id
from desim.store.parts import Parts
from desim.store.queries import Queries
from desim.store.rows import conform, rows_to_table
from desim.store.schema import TABLES, check_table_name, table_schema

__all__ = ["Store", "DEFAULT_STORE"]

DEFAULT_STORE = Path("runs") / "desim.duckdb"


class Store(RunLifecycle, Queries):
    """Results store (see :mod:`desim.store`).

    ``Store(path)`` is cheap and opens no connection; the catalog is created on
    the first write. Safe to use from many processes and threads at once.
    :class:`~desim.store.StoreError` (one line) if ``path`` holds something that
    is not a DuckDB store (a folder, an empty, unreadable or foreign file); such a
    path is left exactly as it was. A path with nothing there is a new store.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, lock_timeout: float = 60.0):
        self.path = Path(path if path is not None else DEFAULT_STORE).expanduser().absolute()
        check_store_file(self.path)  # StoreError before anything is opened or created
        self.parts_dir = self.path.with_name(self.path.name + ".parts")
        self.lock_timeout = float(lock_timeout)
        self._catalog = Catalog(self.path, self.lock_timeout)
        self._parts = Parts(self.parts_dir)
        self._views: dict[str, set[tuple[str, str]]] = {}  # catalog views known current
        self._known_runs: set[str] = set()  # exist (skip id resolution)
        self._open_runs: set[str] = set()  # known to be 'running' (appends allowed)
        self._mem: duckdb.DuckDBPyConnection | None = None  # in-memory DB for queries
        self._mem_pid = 0
        self._mem_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # ------------------------------------------------------------------ connections

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """A fresh connection to this Store's private in-memory DuckDB (cheap;
        temp views and registrations stay local to it). Close it after use."""
        with self._mem_lock:
            if self._mem is None or self._mem_pid != os.getpid():
                self._mem = duckdb.connect(":memory:")
                self._mem_pid = os.getpid()
            return self._mem.cursor()

    @contextlib.contextmanager
    def _write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One catalog transaction; the first one creates the catalog with a view
        per declared table (for outside readers such as a SQL console), unless
        the parts folder already holds runs (see :meth:`_refuse_stale_parts`)."""
        self._ensure()
        with self._catalog.write() as con:
            yield con

    def _ensure(self) -> None:
        if not self._catalog.initialized:
            if not check_store_file(self.path):
                self._refuse_stale_parts()
            self._catalog.ensure(
                (name, listed_parts_sql(self._parts.glob(name)) if self._parts.files(name)
                 else empty_view_sql(name))
                for name in list(TABLES))

    def _refuse_stale_parts(self) -> None:
        """Before a new catalog is created: :class:`StoreError` if the parts folder
        already holds parts of runs (the new catalog would list none of them; they
        are left from a deleted store). Reads and changes nothing else."""
        stale = self._parts.run_ids()
        if stale and not check_store_file(self.path):  # a catalog made meanwhile lists them: not stale
            n = len(stale)
            raise StoreError(
                f"{show_path(self.parts_dir)} holds parts of {n} run{'s' if n != 1 else ''} "
                f"this store does not list (left from a deleted store?): move or delete that folder"
            )

    # ------------------------------------------------------------------ appending

    def append(self, run_id: str, table: str, rows: Any) -> Path | None:
        """Write ``rows`` as one new Parquet part of ``table`` for ``run_id``.

        ``rows``: a dict of equal-length columns (lists or 1-D numpy arrays;
        scalars are repeated), a list of dicts, or a pyarrow Table/RecordBatch.
        A declared table's rows are cast to its schema. A ``run_id`` column is
        added. Returns the part path (None if no rows).
        """
        check_run_id(run_id)
        check_table_name(table)
        if run_id not in self._open_runs:
            stored = self.get_run(run_id, _exact=True)["stored_status"]  # KeyError if unknown
            if stored != "running":
                raise ValueError(
                    f"run {run_id} is {stored!r}: appending would change a finished run "
                    f"(mark it 'running' first to add to it)"
                )
            self._known_runs.add(run_id)
            self._open_runs.add(run_id)
        tbl = rows_to_table(rows)
        if tbl.num_rows == 0:
            return None
        tbl = conform(table, tbl, run_id, table_schema(table))
        path = self._parts.write(table, run_id, tbl)
        self._ensure_catalog_view(table, tbl.schema)
        return path

    def _ensure_catalog_view(self, table: str, schema: pa.Schema) -> None:
        """Keep the catalog's view of ``table`` a read_parquet view of the listed runs'
        parts (for outside readers); the first append of each Store object rewrites it,
        so an older catalog's unfiltered view is brought up to date."""
        cols = {(f.name, str(f.type)) for f in schema}
        known = self._views.get(table)
        if known is not None and cols <= known:
            return
        self._ensure()
        with self._catalog.connect(read_only=False) as con:  # one statement: no transaction to abort
            try:
                con.execute(f"CREATE OR REPLACE VIEW {qi(table)} AS {listed_parts_sql(self._parts.glob(table))}")
            except duckdb.Error:
                # a part file DuckDB cannot read (e.g. a broken one in an orphan folder) stops the
                # glob: the rows are written all the same, and this Store's reads list parts run by run
                return
        self._views[table] = (known or set()) | cols
