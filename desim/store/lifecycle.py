"""Run lifecycle: begin, finish, mark; the ``run()`` context manager and its
:class:`RunHandle`; crashed-writer detection.

``begin_run`` inserts the row with status ``running`` plus the writer's pid,
the process start time and the hostname. ``finish_run``/``mark`` set
``complete``/``failed``/``interrupted``; ``finish_run`` also records per-table
part and row counts. A run left ``running`` by a process that no longer
exists on this host (SIGKILL, OOM) is reported as ``crashed``; the stored
status stays in ``stored_status``. A run is ``complete`` only after
``finish_run``, which follows every ``append`` of the writer.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import secrets
import socket
import subprocess
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import duckdb
import pyarrow as pa

from desim.store.catalog import Catalog
from desim.store.rows import dumps, jsonable, loads

if TYPE_CHECKING:
    from desim.store.core import Store

__all__ = ["KINDS", "STATUSES", "TERMINAL", "RunHandle", "RunLifecycle", "code_version", "with_effective_status"]

KINDS = ("run", "train", "sweep", "eval", "study")  # eval: a failure suite (desim eval); study: desim study
STATUSES = ("running", "complete", "failed", "interrupted")
TERMINAL = ("complete", "failed", "interrupted")


_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID_RE.match(run_id):
        raise ValueError(f"invalid run_id {run_id!r}")
    return run_id


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


# --------------------------------------------------------------------------- writer liveness


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
        return data[data.rindex(")") + 2:].split()
    except (OSError, ValueError):
        return None


def proc_start(pid: int) -> int | None:
    """Start time of a process (clock ticks since boot, Linux), for pid reuse checks."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (ValueError, IndexError):
        return None


def _proc_state(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def pid_alive(pid: int | None, start: int | None) -> bool:
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
        now = proc_start(pid)
        if now is not None and now != start:
            return False  # pid reused by another process
    return True


def with_effective_status(tbl: pa.Table | None) -> pa.Table:
    """The runs table with ``status`` 'crashed' where a 'running' run's writer on
    this host is gone, and the stored status in ``stored_status``."""
    if tbl is None:
        return Catalog.empty_runs_table().append_column("stored_status", pa.array([], type=pa.string()))
    host = socket.gethostname()
    status = tbl.column("status").to_pylist()
    eff = []
    for s, p, st, h in zip(status, tbl.column("pid").to_pylist(), tbl.column("pid_start").to_pylist(),
                           tbl.column("hostname").to_pylist()):
        if s == "running" and h == host and not pid_alive(p, st):
            s = "crashed"
        eff.append(s)
    i = tbl.column_names.index("status")
    tbl = tbl.set_column(i, "status", pa.array(eff, type=pa.string()))
    return tbl.append_column("stored_status", pa.array(status, type=pa.string()))


# --------------------------------------------------------------------------- code version


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


# --------------------------------------------------------------------------- handle


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


# --------------------------------------------------------------------------- the Store's run methods


class RunLifecycle:
    """The :class:`~desim.store.Store` methods that write run rows. Uses the
    store's ``_write``, ``_parts``, ``resolve``, ``_known_runs`` and ``_open_runs``."""

    def begin_run(self, kind: str, scenario: str | None = None, scenario_text: str | None = None,
                  seed: int | None = None, brain: str | None = None,
                  config: Mapping[str, Any] | Any | None = None, *,
                  parent_id: str | None = None, run_id: str | None = None) -> str:
        """Insert a run row with status 'running'; return its run_id
        (``r-YYYYmmdd-HHMMSS-<6 hex>``, UTC)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        if run_id is not None:
            check_run_id(run_id)
        if seed is not None:
            seed = int(seed)
        pid = os.getpid()
        for _ in range(5):
            now = utcnow()
            rid = run_id or f"r-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
            try:
                with self._write() as con:
                    con.execute(
                        "INSERT INTO runs (run_id, kind, scenario, scenario_text, seed, brain, code_version,"
                        " status, started_at, summary, config, parent_id, pid, pid_start, hostname)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                        [rid, kind, scenario, scenario_text, seed, brain, code_version(), now,
                         None, dumps(config), parent_id, pid, proc_start(pid), socket.gethostname()],
                    )
            except duckdb.ConstraintException:
                if run_id is not None:
                    raise ValueError(f"run_id {run_id!r} already exists") from None
                continue
            self._known_runs.add(rid)
            self._open_runs.add(rid)
            return rid
        raise RuntimeError("could not allocate a unique run_id")

    def _set_status(self, run_id: str, status: str, reason: str | None, summary: Mapping | None,
                    tb: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        if run_id not in self._known_runs:
            run_id = self.resolve(run_id)
        tables = dumps(self._parts.counts(run_id)) if status in TERMINAL else None
        finished = utcnow() if status in TERMINAL else None
        with self._write() as con:
            row = con.execute("SELECT summary FROM runs WHERE run_id = ?", [run_id]).fetchone()
            if row is None:
                raise KeyError(f"unknown run_id {run_id!r} in store {self.path}")
            merged = None
            if summary is not None:
                merged = dict(loads(row[0]) or {})
                merged.update(jsonable(dict(summary)))
            con.execute(
                "UPDATE runs SET status = ?, reason = coalesce(?, reason), traceback = coalesce(?, traceback),"
                " finished_at = ?, summary = coalesce(?, summary), tables = coalesce(?, tables)"
                " WHERE run_id = ?",
                [status, reason, tb, finished, dumps(merged), tables, run_id],
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
            merged = dict(loads(row[0]) or {})
            merged.update(jsonable(dict(summary)))
            con.execute("UPDATE runs SET summary = ? WHERE run_id = ?", [dumps(merged), run_id])

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
