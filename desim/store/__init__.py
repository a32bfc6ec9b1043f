"""Results store: a DuckDB catalog plus append-only Parquet parts.

Built for one dashboard reading while several runs, training jobs and sweeps
write, across processes. One reason to change per module:

- :mod:`desim.store.schema`: table declarations (``declare_table``): each run
  table's columns, declared by the code that writes its rows;
- :mod:`desim.store.rows`: rows (dicts of columns, lists of dicts, Arrow) to
  Arrow, conformed to a declared schema; JSON helpers;
- :mod:`desim.store.catalog`: the DuckDB catalog file (the ``runs`` table and
  views), the per-path lock, lock retries with jittered backoff, and
  :class:`StoreError` for a path that is not a DuckDB store (checked before
  anything is opened or created; a bad file is never modified);
- :mod:`desim.store.parts`: atomic Parquet parts,
  ``<store>.parts/<table>/<run_id>/part-NNNNN.parquet``;
- :mod:`desim.store.lifecycle`: begin/finish/mark, the ``run()`` context
  manager and :class:`RunHandle`, crashed-writer detection, ``code_version``;
- :mod:`desim.store.queries`: list_runs, get_run, resolve (ids, unique
  prefixes or suffixes, ``latest``), table, query (``run=`` narrows it to some
  runs), export (one folder per run); every read sees only parts of runs the
  catalog lists;
- :mod:`desim.store.core`: :class:`Store`, which owns a catalog and a parts
  folder and ties them together in ``append``; it refuses to create a new
  catalog over a parts folder that already holds runs (a deleted store's).

Timestamps are naive UTC. ``summary``, ``config`` and ``tables`` are JSON
text in the catalog (decoded to dicts by this API). NaN and inf become ``null``.
The store is kernel code: it imports nothing of the network, the models, the
policies, the dashboards or the app.
"""
from __future__ import annotations

from desim.store.catalog import StoreError, StoreLockTimeout
from desim.store.core import DEFAULT_STORE, Store
from desim.store.lifecycle import KINDS, STATUSES, TERMINAL, RunHandle, code_version
from desim.store.schema import TABLES, TableSchema, declare_table, table_schema

KNOWN_TABLES = TABLES  # the old name: every declared table, by name

__all__ = [
    "DEFAULT_STORE",
    "KINDS",
    "STATUSES",
    "TERMINAL",
    "TABLES",
    "KNOWN_TABLES",
    "Store",
    "RunHandle",
    "StoreError",
    "StoreLockTimeout",
    "TableSchema",
    "code_version",
    "declare_table",
    "table_schema",
]
