"""Results store: a DuckDB catalog plus append-only Parquet parts.

Design (built for one dashboard reading while several runs / training jobs /
sweeps write, across processes):

* DuckDB lets only one process at a time open a database file read-write, and
  a read-write open excludes read-only opens too. So the DuckDB file
  (default ``runs/desim.duckdb``) is only a small **catalog**: the ``runs``
  table (one row per run) and VIEWs over the bulk data. Every process opens
  it for a short transaction only (insert a run row, update status or
  summary, read the ``runs`` table) and closes it right away. An open that
  fails on the file lock is retried with jittered exponential backoff up to
  ``lock_timeout`` seconds, then raises :class:`StoreLockTimeout`. Within a
  process a per-path lock serializes catalog opens (DuckDB refuses a read-only
  and a read-write handle to one file in the same process).
* Bulk rows (``timeseries``, ``contention``, ``events``, ``train_curves``,
  ``net_links``, ``net_delays`` or any other valid table name) never go into
  the DuckDB file. Each ``append`` writes one Parquet part
  ``<store>.parts/<table>/<run_id>/part-NNNNN.parquet``: it writes a hidden
  ``.tmp`` file, then hard-links it to its final name (never overwriting) or
  renames it. A reader sees a whole file or no file, and files are never
  changed after that, so row counts only grow. Writing parts takes no lock.
* Readers (:meth:`Store.list_runs`, :meth:`Store.table`, :meth:`Store.query`)
  hold the catalog lock only long enough to copy the ``runs`` table. They
  then run the query in a private in-memory DuckDB where ``runs`` is that copy
  and each run table is a view over ``read_parquet(<parts glob>,
  union_by_name=true)``. A view is made only when parts exist. A known table
  with no parts yet is an empty view with the right columns. So readers never
  hit "no files found", and long queries never block writers.
* For other tools (such as the SQL console of the dashboard), the catalog
  file holds the same views: empty typed views for known tables are created
  with the catalog, and a ``read_parquet`` view (absolute path) is created
  when a table gets its first part. Open the file read-only, query, and close
  it. A connection left open blocks every writer.
* Run lifecycle: ``begin_run`` inserts the row with status ``running`` plus
  the writer's pid, the process start time and the hostname.
  ``finish_run``/``mark`` set ``complete``/``failed``/``interrupted``.
  ``finish_run`` also records per-table part and row counts (read from the
  Parquet footers). A run left ``running`` by a process that no longer exists
  on this host (SIGKILL, OOM) is reported as ``crashed``; the stored status
  stays in ``stored_status``. A run is ``complete`` only after ``finish_run``,
  which follows every ``append`` of the writer.

Known tables have fixed column types (``KNOWN_TABLES``; appends are cast to
them, ``events.detail`` dicts become JSON text, extra columns are kept); other
tables take whatever columns they are given. Timestamps are naive UTC. ``summary``, ``config`` and ``tables`` are JSON
text (decoded to dicts by this API). NaN and inf become ``null``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import glob
import json
import math
import os
import random
import re
import secrets
import socket
import subprocess
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = [
    "DEFAULT_STORE",
    "KINDS",
    "STATUSES",
    "KNOWN_TABLES",
    "Store",
    "RunHandle",
    "StoreLockTimeout",
    "code_version",
]

DEFAULT_STORE = Path("runs") / "desim.duckdb"
KINDS = ("run", "train", "sweep")
STATUSES = ("running", "complete", "failed", "interrupted")
TERMINAL = ("complete", "failed", "interrupted")
SCHEMA_VERSION = 1

# Fixed schemas for the well-known run tables (besides run_id, which comes first).
# None: generic table, any columns. Columns not listed here are kept as given.
KNOWN_TABLES: dict[str, dict[str, pa.DataType] | None] = {
    "timeseries": {"t": pa.float64(), "metric": pa.string(), "value": pa.float64()},
    "contention": {"x": pa.int64(), "y": pa.int64(), "blocked": pa.int64(), "collisions": pa.int64()},
    "events": {"t": pa.float64(), "kind": pa.string(), "agent": pa.string(), "detail": pa.string()},
    "train_curves": {
        "step": pa.int64(), "wall_s": pa.float64(), "metric": pa.string(),
        "value": pa.float64(), "algo": pa.string(),
    },
    "net_links": None,
    "net_delays": None,
}
# Columns an append to a known table must provide (the rest are filled with nulls).
_REQUIRED = {
    "timeseries": ("t", "metric", "value"),
    "contention": ("x", "y"),
    "events": ("t", "kind"),
    "train_curves": ("step", "metric", "value"),
}
_RESERVED = {"runs", "_meta"}
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")

_RUN_COLUMNS: list[tuple[str, str]] = [
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
_JSON_COLS = ("summary", "config", "tables")


class StoreLockTimeout(TimeoutError):
    """The catalog file stayed locked by another process for too long."""


# --------------------------------------------------------------------------- helpers


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


def _proc_start(pid: int) -> int | None:
    """Start time of a process (clock ticks since boot, Linux), for pid reuse checks."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
        return int(data[data.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
        return data[data.rindex(")") + 2 :].split()[0]
    except (OSError, ValueError, IndexError):
        return None


def _pid_alive(pid: int | None, start: int | None) -> bool:
    if not pid:
        return True  # unknown: don't claim a crash
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return True
    if _proc_state(pid) in ("Z", "X"):  # killed but not yet reaped
        return False
    if start is not None:
        now = _proc_start(pid)
        if now is not None and now != start:
            return False  # pid reused by another process
    return True


_CODE_VERSION: str | None = None


def code_version() -> str:
    """``$DESIM_CODE_VERSION``, else ``git describe --always --dirty --tags`` of the
    source tree, else the installed package version. Cached per process."""
    global _CODE_VERSION
    env = os.environ.get("DESIM_CODE_VERSION")
    if env:
        return env
    if _CODE_VERSION is None:
        ver = None
        try:
            out = subprocess.run(
                ["git", "describe", "--always", "--dirty", "--tags"],
                cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=3,
            )
            if out.returncode == 0 and out.stdout.strip():
                ver = "git:" + out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
        if ver is None:
            try:
                from importlib.metadata import version

                ver = version("desim")
            except Exception:
                ver = "unknown"
        _CODE_VERSION = ver
    return _CODE_VERSION


def _jsonable(obj: Any) -> Any:
    """Make config/summary objects JSON-safe (numpy, pydantic, dataclasses, paths, NaN)."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((_jsonable(v) for v in obj), key=repr)
    if hasattr(obj, "model_dump"):  # pydantic v2
        return _jsonable(obj.model_dump(mode="json"))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return _jsonable(obj.tolist())
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def _dumps(obj: Any) -> str | None:
    if obj is None:
        return None
    return json.dumps(_jsonable(obj), sort_keys=True, allow_nan=False)


def _loads(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _check_table_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or name.lower() in _RESERVED:
        raise ValueError(
            f"invalid table name {name!r}: use letters, digits and '_' (not starting with a digit), "
            f"not one of {sorted(_RESERVED)}"
        )
    return name


def _check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID_RE.match(run_id):
        raise ValueError(f"invalid run_id {run_id!r}")
    return run_id


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _empty_view_sql(name: str) -> str:
    schema = KNOWN_TABLES.get(name) or {}
    cols = ["CAST(NULL AS VARCHAR) AS run_id"]
    for col, typ in schema.items():
        cols.append(f"CAST(NULL AS {_DUCK_TYPES[typ]}) AS {_qi(col)}")
    return f"SELECT {', '.join(cols)} LIMIT 0"


_DUCK_TYPES = {
    pa.float64(): "DOUBLE",
    pa.int64(): "BIGINT",
    pa.string(): "VARCHAR",
}


def _to_json_text(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    return json.dumps(_jsonable(v), sort_keys=True)


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


def _rows_to_table(rows: Any) -> pa.Table:
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
        # a dict column of dicts/lists (e.g. events.detail) -> keep as python objects
        arrays = {}
        for k, v in rows.items():
            try:
                arrays[str(k)] = _column_to_arrow(str(k), v, n)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
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
        return _rows_to_table(cols)
    raise TypeError(
        f"rows must be a dict of columns, a list of dicts or a pyarrow Table, not {type(rows).__name__}"
    )


def _conform(table_name: str, tbl: pa.Table, run_id: str) -> pa.Table:
    """Add/overwrite run_id (first column); coerce known tables to their schema."""
    if "run_id" in tbl.column_names:
        ids = set(tbl.column("run_id").to_pylist())
        if ids - {run_id, None}:
            raise ValueError(f"rows carry run_id(s) {sorted(map(str, ids))} but are appended to {run_id!r}")
        tbl = tbl.drop_columns(["run_id"])
    n = tbl.num_rows
    schema = KNOWN_TABLES.get(table_name)
    if schema:
        missing = [c for c in _REQUIRED.get(table_name, ()) if c not in tbl.column_names]
        if missing:
            raise ValueError(
                f"table {table_name!r} needs columns {list(_REQUIRED[table_name])}; missing {missing}"
            )
        cols: dict[str, pa.ChunkedArray | pa.Array] = {}
        for col, typ in schema.items():
            if col not in tbl.column_names:
                cols[col] = pa.nulls(n, typ)
                continue
            arr = tbl.column(col)
            if table_name == "events" and col == "detail" and not pa.types.is_string(arr.type):
                arr = pa.array([_to_json_text(x) for x in arr.to_pylist()], type=pa.string())
            elif arr.type != typ:
                try:
                    if pa.types.is_null(arr.type):
                        arr = pa.nulls(n, typ)
                    elif typ == pa.string() and not (
                        pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)
                        or pa.types.is_boolean(arr.type) or pa.types.is_large_string(arr.type)
                        or pa.types.is_dictionary(arr.type)
                    ):
                        arr = pa.array([_to_json_text(x) for x in arr.to_pylist()], type=pa.string())
                    else:
                        arr = arr.cast(typ)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
                    raise ValueError(
                        f"table {table_name!r}: column {col!r} of type {arr.type} can't become {typ}: {e}"
                    ) from None
            cols[col] = arr
        for col in tbl.column_names:
            if col not in cols:
                cols[col] = tbl.column(col)
        tbl = pa.table(cols)
    return tbl.add_column(0, "run_id", pa.array([run_id] * n, type=pa.string()))


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
    return isinstance(e, duckdb.Error) and (
        "lock" in msg or "different configuration" in msg
    )


# --------------------------------------------------------------------------- run handle


class RunHandle:
    """What ``with store.run(...) as run:`` yields."""

    def __init__(self, store: "Store", run_id: str):
        self.store = store
        self.run_id = run_id
        self.summary: dict[str, Any] = {}
        self.finished = False

    def append(self, table: str, rows: Any) -> Path | None:
        return self.store.append(self.run_id, table, rows)

    def update_summary(self, summary: Mapping[str, Any] | None = None, **kw: Any) -> None:
        """Set headline figures; stored when the run ends (use
        ``store.update_summary(run.run_id, ...)`` to publish them mid-run)."""
        self.summary.update(summary or {}, **kw)

    def finish(self, status: str = "complete", summary: Mapping[str, Any] | None = None,
               reason: str | None = None) -> None:
        if summary:
            self.summary.update(summary)
        self.store.finish_run(self.run_id, status, self.summary or None, reason=reason)
        self.finished = True

    def __str__(self) -> str:
        return self.run_id

    def __repr__(self) -> str:
        return f"RunHandle({self.run_id!r})"


# --------------------------------------------------------------------------- store


class Store:
    """Results store. See the module docstring for the design.

    ``Store(path)`` is cheap and opens no connection; the catalog is created on
    the first write. Safe to use from many processes and threads at once.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, lock_timeout: float = 60.0):
        self.path = Path(path if path is not None else DEFAULT_STORE).expanduser().absolute()
        self.parts_dir = self.path.with_name(self.path.name + ".parts")
        self.lock_timeout = float(lock_timeout)
        self._initialized = False
        self._views: dict[str, set[tuple[str, str]]] = {}  # catalog views known current
        self._known_runs: set[str] = set()  # exist (skip id resolution)
        self._open_runs: set[str] = set()  # known to be 'running' (appends allowed)
        self._seq: dict[tuple[str, str], int] = {}
        self._lock = _path_lock(str(self.path))
        self._mem: duckdb.DuckDBPyConnection | None = None  # in-memory DB for queries
        self._mem_pid = 0
        self._mem_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # ------------------------------------------------------------------ connections

    @contextlib.contextmanager
    def _connect(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the catalog with lock retries; close it on exit."""
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
        self._ensure_catalog()
        with self._connect(read_only=False) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    con.execute("ROLLBACK")
                raise

    def _ensure_catalog(self) -> None:
        if self._initialized:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            self._create_catalog_file()
        with self._connect(read_only=False) as con:
            cols = ", ".join(f"{n} {t}" for n, t in _RUN_COLUMNS)
            con.execute(f"CREATE TABLE IF NOT EXISTS runs ({cols})")
            have = {r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'"
            ).fetchall()}
            for n, t in _RUN_COLUMNS:  # forward migration: add new columns
                if n not in have:
                    con.execute(f"ALTER TABLE runs ADD COLUMN {n} {t.replace(' PRIMARY KEY', '')}")
            con.execute("CREATE TABLE IF NOT EXISTS _meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
            con.execute(
                "INSERT OR REPLACE INTO _meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
            )
            existing = {r[0] for r in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()}
            for name in KNOWN_TABLES:
                if name not in existing:
                    files = self._part_files(name)
                    sql = self._parquet_select(files_glob=self._glob(name)) if files else _empty_view_sql(name)
                    con.execute(f"CREATE OR REPLACE VIEW {_qi(name)} AS {sql}")
        self._initialized = True

    def _create_catalog_file(self) -> None:
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

    # ------------------------------------------------------------------ parts

    def _glob(self, table: str, run_id: str = "*") -> str:
        return str(self.parts_dir / table / run_id / "*.parquet")

    def _part_files(self, table: str, run_ids: Iterable[str] | None = None) -> list[str]:
        if run_ids is None:
            return sorted(glob.glob(self._glob(table)))
        out: list[str] = []
        for rid in run_ids:
            out.extend(sorted(glob.glob(self._glob(table, rid))))
        return out

    def table_names(self) -> list[str]:
        """Known tables plus any table that has parts."""
        names = set(KNOWN_TABLES)
        if self.parts_dir.is_dir():
            for d in self.parts_dir.iterdir():
                if d.is_dir() and _NAME_RE.match(d.name) and glob.glob(self._glob(d.name)):
                    names.add(d.name)
        return sorted(names)

    @staticmethod
    def _parquet_select(files_glob: str | None = None, files: Sequence[str] | None = None) -> str:
        if files is not None:
            src = "[" + ", ".join(_sql_str(f) for f in files) + "]"
        else:
            src = _sql_str(files_glob or "")
        return f"SELECT * FROM read_parquet({src}, union_by_name = true)"

    def _next_part_path(self, table: str, run_id: str) -> tuple[Path, int]:
        d = self.parts_dir / table / run_id
        key = (table, run_id)
        seq = self._seq.get(key)
        if seq is None:
            seq = 0
            for f in d.glob("part-*.parquet"):
                m = re.match(r"part-(\d+)", f.name)
                if m:
                    seq = max(seq, int(m.group(1)))
        return d, seq + 1

    def append(self, run_id: str, table: str, rows: Any) -> Path | None:
        """Write ``rows`` as one new Parquet part of ``table`` for ``run_id``.

        ``rows``: a dict of equal-length columns (lists or 1-D numpy arrays;
        scalars are repeated), a list of dicts, or a pyarrow Table/RecordBatch.
        A ``run_id`` column is added. Returns the part path (None if no rows).
        """
        _check_run_id(run_id)
        _check_table_name(table)
        if run_id not in self._open_runs:
            stored = self.get_run(run_id, _exact=True)["stored_status"]  # KeyError if unknown
            if stored != "running":
                raise ValueError(
                    f"run {run_id} is {stored!r}: appending would change a finished run "
                    f"(mark it 'running' first to add to it)"
                )
            self._known_runs.add(run_id)
            self._open_runs.add(run_id)
        tbl = _rows_to_table(rows)
        if tbl.num_rows == 0:
            return None
        tbl = _conform(table, tbl, run_id)
        d, seq = self._next_part_path(table, run_id)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".tmp-{os.getpid()}-{secrets.token_hex(4)}.parquet.tmp"
        pq.write_table(tbl, tmp)
        try:
            while True:
                final = d / f"part-{seq:05d}.parquet"
                try:
                    os.link(tmp, final)  # atomic and never overwrites
                    break
                except FileExistsError:
                    seq += 1
                except OSError:  # no hard links on this file system
                    if final.exists():
                        seq += 1
                        continue
                    os.replace(tmp, final)
                    break
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._seq[(table, run_id)] = seq
        self._ensure_catalog_view(table, tbl.schema)
        return final

    def _ensure_catalog_view(self, table: str, schema: pa.Schema) -> None:
        """Keep the catalog's view of ``table`` a read_parquet view (for outside readers)."""
        cols = {(f.name, str(f.type)) for f in schema}
        known = self._views.get(table)
        if known is not None and cols <= known:
            return
        with self._write() as con:
            con.execute(
                f"CREATE OR REPLACE VIEW {_qi(table)} AS {self._parquet_select(files_glob=self._glob(table))}"
            )
        self._views[table] = (known or set()) | cols

    # ------------------------------------------------------------------ runs: writing

    def begin_run(self, kind: str, scenario: str | None = None, scenario_text: str | None = None,
                  seed: int | None = None, brain: str | None = None,
                  config: Mapping[str, Any] | Any | None = None, *,
                  parent_id: str | None = None, run_id: str | None = None) -> str:
        """Insert a run row with status 'running'; return its run_id
        (``r-YYYYmmdd-HHMMSS-<6 hex>``, UTC)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        if run_id is not None:
            _check_run_id(run_id)
        if seed is not None:
            seed = int(seed)
        pid = os.getpid()
        for _ in range(5):
            now = _utcnow()
            rid = run_id or f"r-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
            try:
                with self._write() as con:
                    con.execute(
                        "INSERT INTO runs (run_id, kind, scenario, scenario_text, seed, brain, code_version,"
                        " status, started_at, summary, config, parent_id, pid, pid_start, hostname)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                        [rid, kind, scenario, scenario_text, seed, brain, code_version(), now,
                         None, _dumps(config), parent_id, pid, _proc_start(pid), socket.gethostname()],
                    )
            except duckdb.ConstraintException:
                if run_id is not None:
                    raise ValueError(f"run_id {run_id!r} already exists") from None
                continue
            self._known_runs.add(rid)
            self._open_runs.add(rid)
            return rid
        raise RuntimeError("could not allocate a unique run_id")

    def _table_counts(self, run_id: str) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        if not self.parts_dir.is_dir():
            return out
        for d in sorted(self.parts_dir.glob(f"*/{run_id}")):
            files = sorted(glob.glob(str(d / "*.parquet")))
            if files:
                rows = sum(pq.read_metadata(f).num_rows for f in files)
                out[d.parent.name] = {"parts": len(files), "rows": rows}
        return out

    def _set_status(self, run_id: str, status: str, reason: str | None, summary: Mapping | None,
                    tb: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        if run_id not in self._known_runs:
            run_id = self.resolve(run_id)
        tables = _dumps(self._table_counts(run_id)) if status in TERMINAL else None
        finished = _utcnow() if status in TERMINAL else None
        with self._write() as con:
            row = con.execute("SELECT summary FROM runs WHERE run_id = ?", [run_id]).fetchone()
            if row is None:
                raise KeyError(f"unknown run_id {run_id!r} in store {self.path}")
            merged = None
            if summary is not None:
                merged = dict(_loads(row[0]) or {})
                merged.update(_jsonable(dict(summary)))
            con.execute(
                "UPDATE runs SET status = ?, reason = coalesce(?, reason), traceback = coalesce(?, traceback),"
                " finished_at = ?, summary = coalesce(?, summary), tables = coalesce(?, tables)"
                " WHERE run_id = ?",
                [status, reason, tb, finished, _dumps(merged), tables, run_id],
            )
        if status == "running":
            self._open_runs.add(run_id)
        else:
            self._open_runs.discard(run_id)

    def finish_run(self, run_id: str, status: str = "complete", summary: Mapping[str, Any] | None = None,
                   *, reason: str | None = None) -> None:
        """Set a terminal status (default 'complete'), finished_at, the part/row
        counts per table, and merge ``summary`` into the stored summary."""
        if status not in TERMINAL:
            raise ValueError(f"finish_run status must be one of {TERMINAL}, not {status!r}")
        self._set_status(run_id, status, reason, summary)

    def mark(self, run_id: str, status: str, reason: str | None = None) -> None:
        """Set any status (running/complete/failed/interrupted) with a reason."""
        self._set_status(run_id, status, reason, None)

    def update_summary(self, run_id: str, summary: Mapping[str, Any]) -> None:
        """Merge headline figures into a run's summary (e.g. live, mid-run)."""
        if run_id not in self._known_runs:
            run_id = self.resolve(run_id)
        with self._write() as con:
            row = con.execute("SELECT summary FROM runs WHERE run_id = ?", [run_id]).fetchone()
            if row is None:
                raise KeyError(f"unknown run_id {run_id!r} in store {self.path}")
            merged = dict(_loads(row[0]) or {})
            merged.update(_jsonable(dict(summary)))
            con.execute("UPDATE runs SET summary = ? WHERE run_id = ?", [_dumps(merged), run_id])

    @contextlib.contextmanager
    def run(self, kind: str, scenario: str | None = None, scenario_text: str | None = None,
            seed: int | None = None, brain: str | None = None,
            config: Mapping[str, Any] | Any | None = None, **kw: Any) -> Iterator[RunHandle]:
        """``with store.run('run', ...) as run: run.append(...); run.summary[...] = ...``

        Normal exit: 'complete' with ``run.summary``. Exception: 'failed' (reason =
        the error, traceback kept). KeyboardInterrupt/SystemExit: 'interrupted'.
        The exception is re-raised.
        """
        handle = RunHandle(self, self.begin_run(kind, scenario, scenario_text, seed, brain, config, **kw))
        try:
            yield handle
        except (KeyboardInterrupt, SystemExit, GeneratorExit) as e:
            if not handle.finished:
                self._record_end(handle, e, "interrupted", f"{type(e).__name__}: {e}".rstrip(": "), None)
            raise
        except BaseException as e:
            if not handle.finished:
                tb = "".join(traceback.format_exception(e))[-20000:]
                self._record_end(handle, e, "failed", f"{type(e).__name__}: {e}", tb)
            raise
        else:
            if not handle.finished:
                handle.finish("complete")

    def _record_end(self, handle: RunHandle, exc: BaseException, status: str, reason: str,
                    tb: str | None) -> None:
        """Store the end of a run that raised; never hide the original exception."""
        try:
            self._set_status(handle.run_id, status, reason, handle.summary or None, tb=tb)
            handle.finished = True
        except Exception as e2:  # e.g. StoreLockTimeout: the run will show as 'crashed'
            exc.add_note(f"desim.store: could not mark run {handle.run_id} {status!r}: {e2!r}")

    # ------------------------------------------------------------------ runs: reading

    def _runs_arrow(self) -> pa.Table:
        """Copy of the runs table (with the effective status), held lock only briefly."""
        names = [n for n, _ in _RUN_COLUMNS]
        if not self.path.exists():
            return self._effective(None)
        with self._connect(read_only=True) as con:
            try:
                tbl = con.sql(f"SELECT {', '.join(names)} FROM runs").to_arrow_table()
            except duckdb.CatalogException:
                tbl = None
        return self._effective(tbl)

    def _effective(self, tbl: pa.Table | None) -> pa.Table:
        types = {
            "VARCHAR": pa.string(), "BIGINT": pa.int64(), "TIMESTAMP": pa.timestamp("us"),
        }
        if tbl is None:
            return pa.table({n: pa.array([], type=types[t.split()[0]]) for n, t in _RUN_COLUMNS}
                            | {"stored_status": pa.array([], type=pa.string())})
        host = socket.gethostname()
        status = tbl.column("status").to_pylist()
        pids = tbl.column("pid").to_pylist()
        starts = tbl.column("pid_start").to_pylist()
        hosts = tbl.column("hostname").to_pylist()
        eff = []
        for s, p, st, h in zip(status, pids, starts, hosts):
            if s == "running" and h == host and not _pid_alive(p, st):
                s = "crashed"
            eff.append(s)
        i = tbl.column_names.index("status")
        tbl = tbl.set_column(i, "status", pa.array(eff, type=pa.string()))
        return tbl.append_column("stored_status", pa.array(status, type=pa.string()))

    @staticmethod
    def _decode(row: dict[str, Any]) -> dict[str, Any]:
        for c in _JSON_COLS:
            if c in row:
                row[c] = _loads(row[c])
        s, f = row.get("started_at"), row.get("finished_at")
        if s is not None:
            row["duration_s"] = ((f or _utcnow()) - s).total_seconds()
        return row

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
            runs = self._runs_arrow()
            con.register("runs", runs)
            rel = con.execute(sql, params)
            cols = [d[0] for d in rel.description]
            return [self._decode(dict(zip(cols, r))) for r in rel.fetchall()]
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
        return self._decode(runs.slice(idx, 1).to_pylist()[0])

    # ------------------------------------------------------------------ tables & SQL

    def _reader(self, run_ids: Sequence[str] | None = None,
                tables: Iterable[str] | None = None) -> duckdb.DuckDBPyConnection:
        """In-memory connection with ``runs`` (a copy) and one view per run table."""
        con = self._cursor()
        try:
            con.register("runs", self._runs_arrow())
            for name in (tables if tables is not None else self.table_names()):
                files = self._part_files(name, run_ids)
                if files:
                    sql = (self._parquet_select(files=files) if run_ids is not None
                           else self._parquet_select(files_glob=self._glob(name)))
                elif name in KNOWN_TABLES:
                    sql = _empty_view_sql(name)
                elif self._part_files(name):  # parts, but not for these runs
                    sql = self._parquet_select(files_glob=self._glob(name)) + " LIMIT 0"
                else:
                    continue
                con.execute(f"CREATE TEMP VIEW {_qi(name)} AS {sql}")
        except BaseException:
            con.close()
            raise
        return con

    def table(self, name: str, run_ids: str | Sequence[str] | None = None, *,
              as_dicts: bool = False) -> pa.Table | list[dict[str, Any]]:
        """All rows of a run table (optionally for some runs; ids or prefixes),
        as a pyarrow Table (or a list of dicts). Known tables with no rows give
        an empty table with their columns; unknown names raise KeyError."""
        _check_table_name(name)
        if isinstance(run_ids, str):
            run_ids = [run_ids]
        ids = None if run_ids is None else [self.resolve(r) for r in run_ids]
        if name not in KNOWN_TABLES and not self._part_files(name):
            raise KeyError(f"no table {name!r} in store {self.path}; have {self.table_names()}")
        con = self._reader(ids, tables=[name])
        try:
            tbl = con.sql(f"SELECT * FROM {_qi(name)}").to_arrow_table()
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
        mask = pc.equal(runs.column("run_id"), run_id)
        p = out / "run.parquet"
        pq.write_table(runs.filter(mask), p)
        paths.append(p)
        for name in self.table_names():
            files = self._part_files(name, [run_id])
            if not files:
                continue
            con = self._cursor()
            try:
                tbl = con.sql(self._parquet_select(files=files)).to_arrow_table()
            finally:
                con.close()
            p = out / f"{name}.parquet"
            tmp = out / f".{name}.parquet.tmp"
            pq.write_table(tbl, tmp)
            os.replace(tmp, p)
            paths.append(p)
        return paths
