"""The DuckDB catalog file and its locking.

DuckDB lets one process at a time open a file read-write, and a read-write
open excludes read-only opens too. So the catalog holds only the ``runs``
table (one row per run), ``_meta`` and views over the Parquet parts, and
every process opens it for one short transaction. An open that fails on the
file lock is retried with jittered exponential backoff up to ``lock_timeout``
seconds, then raises :class:`StoreLockTimeout`. Within a process a per-path
lock serializes opens (DuckDB refuses a read-only and a read-write handle to
one file in the same process).

Before any open (and before anything is created next to it) the path is
checked cheaply by :func:`check_store_file`: a folder, an empty, unreadable,
too short or non-DuckDB file raises :class:`StoreError` (one line) and is left
untouched; a DuckDB error on open becomes a :class:`StoreError` too.
"""
from __future__ import annotations

import contextlib
import os
import random
import re
import secrets
import stat
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import duckdb
import pyarrow as pa

from desim.store.schema import TABLES, duck_type

__all__ = ["Catalog", "StoreError", "StoreLockTimeout", "check_store_file", "show_path", "one_line",
           "RUN_COLUMNS", "SCHEMA_VERSION", "sql_str", "qi", "parquet_select", "listed_parts_sql",
           "empty_view_sql"]

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


class StoreError(ValueError):
    """A store (or export) path that cannot be used; ``str()`` is one line in
    plain words naming the path and the problem."""


# A DuckDB file starts with a 4 KiB main header (an 8-byte checksum, then the
# magic "DUCK") followed by two 4 KiB database headers, so a real store is at
# least 12 KiB long.
DUCKDB_MAGIC = b"DUCK"
DUCKDB_MAGIC_OFFSET = 8
DUCKDB_MIN_SIZE = 3 * 4096


def show_path(path: os.PathLike | str) -> str:
    """A path for a one-line message (escaped if it holds control characters)."""
    s = os.fspath(path)
    return s if s.isprintable() else repr(s)


def one_line(text: object) -> str:
    """The first non-empty line of an error text, whitespace collapsed."""
    for line in str(text).splitlines():
        if line.strip():
            return " ".join(line.split())
    return ""


def check_store_file(path: Path) -> bool:
    """Whether a store file exists at ``path``; :class:`StoreError` if something
    is there that is not a DuckDB file (a folder, an empty, unreadable, too
    short or foreign file). Reads at most 12 bytes and changes nothing."""
    where = show_path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        raise StoreError(f"store {where} cannot exist: a folder above it is a file") from None
    except OSError as e:
        raise StoreError(f"store {where} cannot be read: {one_line(e.strerror or e)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise StoreError(f"store {where} is a folder, not a DuckDB store file")
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"store {where} is not a regular file, so not a DuckDB store")
    if st.st_size == 0:
        raise StoreError(f"store {where} is an empty file, not a DuckDB store")
    try:
        with open(path, "rb") as f:
            head = f.read(DUCKDB_MAGIC_OFFSET + len(DUCKDB_MAGIC))
    except PermissionError:
        raise StoreError(f"store {where} is not readable (permission denied)") from None
    except OSError as e:
        raise StoreError(f"store {where} cannot be read: {one_line(e.strerror or e)}") from None
    if head[DUCKDB_MAGIC_OFFSET:] != DUCKDB_MAGIC:
        raise StoreError(f"store {where} is not a DuckDB store (no DuckDB header; "
                         f"a {st.st_size}-byte file of something else)")
    if st.st_size < DUCKDB_MIN_SIZE:
        raise StoreError(f"store {where} is a truncated DuckDB file ({st.st_size} bytes; "
                         f"a DuckDB store has at least {DUCKDB_MIN_SIZE})")
    return True


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


def listed_parts_sql(files_glob: str) -> str:
    """The catalog's view of a run table, for outside readers of the catalog file:
    every part under ``files_glob`` whose rows belong to a run the ``runs`` table lists
    (parts left from a deleted store, or from a writer that never made its row, are not shown)."""
    return f"{parquet_select(files_glob=files_glob)} WHERE run_id IN (SELECT run_id FROM runs)"


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


def _is_damage(e: BaseException) -> bool:
    """A DuckDB error from reading or writing the file itself (truncated, corrupt,
    disk full), not from a statement."""
    return isinstance(e, duckdb.IOException) or type(e) is duckdb.Error or "corrupt" in str(e).lower()


def _is_lock_error(e: BaseException) -> bool:
    msg = str(e).lower()  # "lock" as a word: not "block" (corrupt files mention blocks)
    return isinstance(e, duckdb.Error) and (re.search(r"\block\b", msg) is not None
                                            or "different configuration" in msg)


class Catalog:
    """One catalog file: short connections with lock retries, its creation and schema."""

    def __init__(self, path: Path, lock_timeout: float):
        self.path = path
        self.lock_timeout = float(lock_timeout)
        self._lock = _path_lock(str(path))
        self.initialized = False

    @contextlib.contextmanager
    def connect(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the catalog with lock retries (jittered exponential backoff); close it on exit.
        :class:`StoreError` if the file is not a usable DuckDB store (then nothing is opened)."""
        deadline = time.monotonic() + self.lock_timeout
        attempt = 0
        with self._lock:
            while True:
                exists = check_store_file(self.path)
                if read_only and not exists:
                    raise StoreError(f"store {show_path(self.path)} does not exist")
                try:
                    con = duckdb.connect(str(self.path), read_only=read_only)
                    break
                except duckdb.Error as e:
                    transient = _is_lock_error(e) or (
                        "not a valid duckdb database" in str(e).lower()
                        and time.monotonic() < deadline - self.lock_timeout + 2.0
                    )
                    if not transient:
                        raise StoreError(f"store {show_path(self.path)} cannot be opened: {one_line(e)}") from e
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
            try:
                con.execute("BEGIN TRANSACTION")
                try:
                    yield con
                    con.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(Exception):
                        con.execute("ROLLBACK")
                    raise
            except duckdb.Error as e:
                if _is_damage(e):
                    raise StoreError(f"store {show_path(self.path)} cannot be written: {one_line(e)}") from e
                raise

    def ensure(self, views: Iterable[tuple[str, str]] = ()) -> None:
        """Create the file and the ``runs``/``_meta`` tables, add new run columns,
        and create the given ``(table, select_sql)`` views that are missing
        (the empty typed views of declared tables, for outside readers)."""
        if self.initialized:
            return
        if not check_store_file(self.path):  # validate before creating anything
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"store {show_path(self.path)} cannot be created: "
                                 f"{one_line(e.strerror or e)}") from None
            self._create_file()
        else:
            self._probe()  # a damaged store fails here, before any read-write open could touch it
        try:
            self._ensure_schema(views)
        except duckdb.Error as e:  # e.g. a truncated file that opened
            raise StoreError(f"store {show_path(self.path)} cannot be read: {one_line(e)}") from e
        self.initialized = True

    def _probe(self) -> None:
        """Read the whole catalog (``runs`` and ``_meta``: every data block) read-only;
        StoreError if the file is damaged (e.g. truncated past its headers)."""
        with self.connect(read_only=True) as con:
            for name in ("runs", "_meta"):
                try:
                    con.sql(f"SELECT * FROM {name}").to_arrow_table()
                except duckdb.CatalogException:
                    pass  # not created yet
                except duckdb.Error as e:
                    raise StoreError(f"store {show_path(self.path)} cannot be read: {one_line(e)}") from e

    def _ensure_schema(self, views: Iterable[tuple[str, str]]) -> None:
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
                    try:
                        con.execute(f"CREATE OR REPLACE VIEW {qi(name)} AS {sql}")
                    except (duckdb.InvalidInputException, duckdb.IOException):
                        pass  # a part file DuckDB cannot read: no view for outside readers yet

    def _create_file(self) -> None:
        """Create an empty DuckDB file under a temp name, then hard-link it into
        place (no clobber), so no process ever opens a half-created catalog."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            try:
                con = duckdb.connect(str(tmp))
                con.execute("CREATE TABLE IF NOT EXISTS _meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
                con.execute("CHECKPOINT")
                con.close()
            except duckdb.Error as e:
                raise StoreError(f"store {show_path(self.path)} cannot be created: {one_line(e)}") from e
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
        if not check_store_file(self.path):
            return None
        names = [n for n, _ in RUN_COLUMNS]
        with self.connect(read_only=True) as con:
            try:
                return con.sql(f"SELECT {', '.join(names)} FROM runs").to_arrow_table()
            except duckdb.CatalogException:
                return None
            except duckdb.Error as e:  # e.g. a damaged file that opened
                raise StoreError(f"store {show_path(self.path)} cannot be read: {one_line(e)}") from e

    @staticmethod
    def empty_runs_table() -> pa.Table:
        return pa.table({n: pa.array([], type=_ARROW_TYPES[t.split()[0]]) for n, t in RUN_COLUMNS})
