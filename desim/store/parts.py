"""Atomic Parquet parts: ``<store>.parts/<table>/<run_id>/part-NNNNN.parquet``.

Each part is written under a hidden temporary name, then hard-linked to its
final name (never overwriting) or, where the file system has no hard links,
renamed. A reader sees a whole file or no file, and files never change after
that, so row counts only grow. Writing parts takes no lock.
"""
from __future__ import annotations

import contextlib
import glob
import os
import re
import secrets
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from desim.store.schema import NAME_RE

__all__ = ["Parts"]


class Parts:
    """The parts folder of one store."""

    def __init__(self, root: Path):
        self.root = root
        self._seq: dict[tuple[str, str], int] = {}  # last part number written, per (table, run)

    def glob(self, table: str, run_id: str = "*") -> str:
        return str(self.root / table / run_id / "*.parquet")

    def files(self, table: str, run_ids: Iterable[str] | None = None) -> list[str]:
        """Part files of ``table``: of every run folder on disk (``run_ids=None``),
        or of the given runs only, in their order."""
        if run_ids is None:
            return sorted(glob.glob(self.glob(table)))
        present = self.run_dirs(table)
        out: list[str] = []
        for rid in run_ids:
            if rid in present:
                out.extend(self._run_files(table, rid))
        return out

    def run_dirs(self, table: str) -> set[str]:
        """Names of the run folders under ``table`` (parts in them or not)."""
        try:
            return {e.name for e in os.scandir(self.root / table) if e.is_dir()}
        except (FileNotFoundError, NotADirectoryError):
            return set()

    def _run_files(self, table: str, run_id: str) -> list[str]:
        return sorted(glob.glob(os.path.join(glob.escape(str(self.root / table / run_id)), "*.parquet")))

    def _table_dirs(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(d.name for d in self.root.iterdir() if d.is_dir() and NAME_RE.match(d.name))

    def tables(self, run_ids: Iterable[str] | None = None) -> set[str]:
        """Tables that have at least one part (of one of ``run_ids``, if given)."""
        if run_ids is None:
            return {t for t in self._table_dirs() if glob.glob(self.glob(t))}
        ids = set(run_ids)
        return {t for t in self._table_dirs()
                if any(self._run_files(t, rid) for rid in sorted(self.run_dirs(t) & ids))}

    def run_ids(self) -> set[str]:
        """Every run that has at least one part, in any table (whether a catalog lists it or not)."""
        out: set[str] = set()
        for t in self._table_dirs():
            out.update(rid for rid in self.run_dirs(t) - out if self._run_files(t, rid))
        return out

    def counts(self, run_id: str) -> dict[str, dict[str, int]]:
        """``{table: {"parts": n, "rows": m}}`` for one run (rows from the Parquet footers)."""
        out: dict[str, dict[str, int]] = {}
        if not self.root.is_dir():
            return out
        for d in sorted(self.root.glob(f"*/{run_id}")):
            files = sorted(glob.glob(str(d / "*.parquet")))
            if files:
                rows = sum(pq.read_metadata(f).num_rows for f in files)
                out[d.parent.name] = {"parts": len(files), "rows": rows}
        return out

    def _next(self, d: Path, table: str, run_id: str) -> int:
        seq = self._seq.get((table, run_id))
        if seq is None:
            seq = 0
            for f in d.glob("part-*.parquet"):
                m = re.match(r"part-(\d+)", f.name)
                if m:
                    seq = max(seq, int(m.group(1)))
        return seq + 1

    def write(self, table: str, run_id: str, tbl: pa.Table) -> Path:
        """Write ``tbl`` as the next part of ``table`` for ``run_id``; return its path."""
        d = self.root / table / run_id
        seq = self._next(d, table, run_id)
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
        return final
