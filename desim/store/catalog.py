"""The DuckDB catalog file and its locking.

DuckDB lets one process at a time open a file read-write, and a read-write
open excludes read-only opens too. So the catalog holds only the ``runs``
table (one row per run), ``_meta`` and views over the Parquet parts, and
every process opens it for one short transaction. An open that fails on the
file lock is retried with jittered exponential backoff up to ``lock_timeout``
seconds, then raises :class:`StoreLockTimeout`. Within a process a per-path
lock serializes opens (DuckDB refuses a read-only and a read-write handle to
one file in the same process).
"""
from __future__ import annotations

import contextlib
import os
import random
import secrets
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import duckdb
import pyarrow as pa

from desim.store.schema import TABLES, duck_type

__all__ = ["Catalog", "StoreLockTimeout", "RUN_COLUMNS", "SCHEMA_VERSION", "sql_str", "qi",
           "parquet_select", "empty_view_sql"]

SCHEMA_VERSION = 1

RUN_COLUMNS: list[tuple[str, str]] = [
    ("run_id", "VARCHAR PRIMARY KEY"),
    ("kind", "VARCHAR"),
    ("scenario", "VARCHAR"),
    ("scenario_text", "VARCHAR"),
    ("seed", "BIGINT"),
    ("brain", "VARCHAR"),
    ("code_version", "VARCHAR"),
    ("status", "VARCHAR"),
    ("reason", "VARCHAR"),
    ("traceback", "VARCHAR"),
    ("started_at", "TIMESTAMP"),
    ("finished_at", "TIMESTAMP"),
    ("summary", "VARCHAR"),  # JSON
    ("config", "VARCHAR"),  # JSON
    ("tables", "VARCHAR"),  # JSON {table: {"parts": n, "rows": m}}, set by finish_run
    ("parent_id", "VARCHAR"),  # e.g. the sweep a run belongs to
    ("pid", "BIGINT"),
    ("pid_start", "BIGINT"),
    ("hostname", "VARCHAR"),
]
_ARROW_TYPES = {"VARCHAR": pa.string(), "BIGINT": pa.int64(), "TIMESTAMP": pa.timestamp("us")}


class StoreLockTimeout(TimeoutError):
    """The catalog file stayed locked by another process for too long."""


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def parquet_select(files_glob: str | None = None, files: Sequence[str] | None = None) -> str:
    if files is not None:
        src = "[" + ", ".join(sql_str(f) for f in files) + "]"
    else:
        src = sql_str(files_glob or "")
    return f"SELECT * FROM read_parquet({src}, union_by_name = true)"


def empty_view_sql(name: str) -> str:
    """A zero-row SELECT with a declared table's columns (just ``run_id`` if undeclared)."""
    schema = TABLES.get(name)
    cols = ["CAST(NULL AS VARCHAR) AS run_id"]
    for col, typ in ((schema.columns or {}).items() if schema else ()):
        cols.append(f"CAST(NULL AS {duck_type(typ)}) AS {qi(col)}")
    return f"SELECT {', '.join(cols)} LIMIT 0"


# one lock per catalog path per process: DuckDB refuses a read-only and a read-write
# handle on one file in the same process
_PATH_LOCKS: dict[str, threading.RLock] = {}
_PATH_LOCKS_GUARD = threading.Lock()


def _path_lock(path: str) -> threading.RLock:
    with _PATH_LOCKS_GUARD:
        lk = _PATH_LOCKS.get(path)
        if lk is None:
            lk = _PATH_LOCKS[path] = threading.RLock()
        return lk


def _is_lock_error(e: BaseException) -> bool:
    msg = str(e).lower()
    return isinstance(e, duckdb.Error) and ("lock" in msg or "different configuration" in msg)


class Catalog:
    """One catalog file: short connections with lock retries, its creation and schema."""

    def __init__(self, path: Path, lock_timeout: float):
        self.path = path
        self.lock_timeout = float(lock_timeout)
        self._lock = _path_lock(str(path))
        self.initialized = False

    @contextlib.contextmanager
    def connect(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the catalog with lock retries (jittered exponential backoff); close it on exit."""
        deadline = time.monotonic() + self.lock_timeout
        attempt = 0
        with self._lock:
            while True:
                try:
                    con = duckdb.connect(str(self.path), read_only=read_only)
                    break
                except duckdb.Error as e:
                    transient = _is_lock_error(e) or (
                        "not a valid duckdb database" in str(e).lower()
                        and time.monotonic() < deadline - self.lock_timeout + 2.0
                    )
                    if not transient:
                        raise
                    if time.monotonic() >= deadline:
                        raise StoreLockTimeout(
                            f"store {self.path} stayed locked for {self.lock_timeout:.0f}s "
                            f"(a process holds it open; is a dashboard keeping a connection?): {e}"
                        ) from e
                    delay = min(0.1, 0.002 * (2 ** min(attempt, 10))) * (0.5 + random.random())
                    time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                    attempt += 1
            try:
                yield con
            finally:
                con.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One read-write transaction (call :meth:`ensure` first)."""
        with self.connect(read_only=False) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    con.execute("ROLLBACK")
                raise

    def ensure(self, views: Iterable[tuple[str, str]] = ()) -> None:
        """Create the file and the ``runs``/``_meta`` tables, add new run columns,
        and create the given ``(table, select_sql)`` views that are missing
        (the empty typed views of declared tables, for outside readers)."""
        if self.initialized:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            self._create_file()
        with self.connect(read_only=False) as con:
            cols = ", ".join(f"{n} {t}" for n, t in RUN_COLUMNS)
            con.execute(f"CREATE TABLE IF NOT EXISTS runs ({cols})")
            have = {r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'"
            ).fetchall()}
            for n, t in RUN_COLUMNS:  # forward migration: add new columns
                if n not in have:
                    con.execute(f"ALTER TABLE runs ADD COLUMN {n} {t.replace(' PRIMARY KEY', '')}")
            con.execute("CREATE TABLE IF NOT EXISTS _meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
            con.execute("INSERT OR REPLACE INTO _meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
            existing = {r[0] for r in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()}
            for name, sql in views:
                if name not in existing:
                    con.execute(f"CREATE OR REPLACE VIEW {qi(name)} AS {sql}")
        self.initialized = True

    def _create_file(self) -> None:
        """Create an empty DuckDB file under a temp name, then hard-link it into
        place (no clobber), so no process ever opens a half-created catalog."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            con = duckdb.connect(str(tmp))
            con.execute("CREATE TABLE IF NOT EXISTS _meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
            con.execute("CHECKPOINT")
            con.close()
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another process won the race
            except OSError:  # no hard links here: rename (a racing creator may replace ours; both empty)
                if not self.path.exists():
                    os.replace(tmp, self.path)
        finally:
            for f in (tmp, tmp.with_name(tmp.name + ".wal")):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f)

    def runs_table(self) -> pa.Table | None:
        """A copy of the ``runs`` table (None if there is no catalog yet); the lock is held only to copy."""
        if not self.path.exists():
            return None
        names = [n for n, _ in RUN_COLUMNS]
        with self.connect(read_only=True) as con:
            try:
                return con.sql(f"SELECT {', '.join(names)} FROM runs").to_arrow_table()
            except duckdb.CatalogException:
                return None

    @staticmethod
    def empty_runs_table() -> pa.Table:
        return pa.table({n: pa.array([], type=_ARROW_TYPES[t.split()[0]]) for n, t in RUN_COLUMNS})
