"""desim.store reads only what its catalogue lists (issue 25): a stale parts
folder left by a deleted catalog is refused, orphan part folders of an existing
store are never read, and ``query(..., run=)`` narrows every table to some runs.
Real DuckDB files and Parquet parts in tmp_path."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from desim.store import Store, StoreError, declare_table

REQ = "t_cat_requests"  # a declared table (like the tutorial's cs_requests)
FREE = "t_cat_notes"  # an undeclared one (any columns)
declare_table(REQ, {"outcome": pa.string(), "ms": pa.float64()}, required=("outcome",))


@pytest.fixture(autouse=True)
def _no_git(monkeypatch):
    monkeypatch.setenv("DESIM_CODE_VERSION", "test-version")


def _write_run(store: Store, outcomes: dict[str, int], seed: int = 0) -> str:
    with store.run("run", "cat", seed=seed) as run:
        rows = [{"outcome": o, "ms": float(i)} for o, n in outcomes.items() for i in range(n)]
        run.append(REQ, rows[: len(rows) // 2])
        run.append(REQ, rows[len(rows) // 2:])  # two parts
        run.append(FREE, {"note": [f"seed {seed}"]})
    return run.run_id


def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a hash of its bytes (what must not change)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    return msg


def _counts(store: Store, **kw) -> dict[str, int]:
    return {r["run_id"]: r["n"] for r in store.query(
        f"SELECT run_id, count(*) AS n FROM {REQ} GROUP BY run_id", **kw)}


# --------------------------------------------------------------------------- a stale parts folder


def test_new_store_over_a_stale_parts_folder_is_refused_and_nothing_is_touched(tmp_path):
    path = tmp_path / "st" / "desim.duckdb"
    old = Store(path)
    ids = [_write_run(old, {"ok": 3 + i, "late": 1}, seed=i) for i in range(3)]
    parts = path.with_name(path.name + ".parts")
    assert sorted(os.listdir(parts / REQ)) == sorted(ids)
    path.unlink()  # the catalog is deleted; its parts folder is not
    for f in path.parent.glob(path.name + ".wal"):
        f.unlink()
    before_parts = _tree(parts)
    before_dir = sorted(os.listdir(path.parent))

    new = Store(path)  # cheap: opens nothing, refuses nothing yet
    # a reader of the (not yet created) store sees no runs and none of their rows
    assert new.list_runs() == []
    assert new.query(f"SELECT count(*) AS n FROM {REQ}") == [{"n": 0}]
    assert new.table(REQ).num_rows == 0
    assert FREE not in new.table_names()
    with pytest.raises(KeyError):
        new.table(FREE)

    # creating it (the first write) is refused in one line naming the folder and what to do
    for write in (lambda: new.begin_run("run", "again"), lambda: new.run("run", "again").__enter__()):
        with pytest.raises(StoreError) as ei:
            write()
        msg = _one_line(ei.value)
        assert str(parts) in msg and "3 runs" in msg and "does not list" in msg, msg
        assert "move or delete that folder" in msg, msg
    assert _tree(parts) == before_parts  # every part file, byte for byte
    assert sorted(os.listdir(path.parent)) == before_dir  # no catalog, no .wal, no temp file
    assert not path.exists()

    # once the folder is moved away the store is created, and reads only its own runs
    shutil.move(parts, tmp_path / "kept.parts")
    rid = _write_run(Store(path), {"ok": 2}, seed=9)
    again = Store(path)
    assert [r["run_id"] for r in again.list_runs()] == [rid]
    assert _counts(again) == {rid: 2}
    assert _tree(tmp_path / "kept.parts") == before_parts


def test_parts_folder_holding_no_parts_does_not_block_a_new_store(tmp_path):
    path = tmp_path / "desim.duckdb"
    parts = path.with_name(path.name + ".parts")
    (parts / REQ / "r-empty").mkdir(parents=True)  # a folder, but no part in it
    (parts / REQ / "r-empty" / ".tmp-1-ab.parquet.tmp").write_bytes(b"half")  # a writer's temp file
    rid = _write_run(Store(path), {"ok": 1})
    assert _counts(Store(path)) == {rid: 1}


# --------------------------------------------------------------------------- orphan part folders


def test_orphan_part_folders_of_an_existing_store_are_never_read(tmp_path):
    path = tmp_path / "desim.duckdb"
    store = Store(path)
    a = _write_run(store, {"ok": 3, "late": 1}, seed=1)
    b = _write_run(store, {"ok": 1}, seed=2)
    parts = store.parts_dir
    # a writer that died before its catalog row: a well-formed part with an extra column ...
    (parts / REQ / "r-orphan").mkdir()
    pq.write_table(pa.table({"run_id": ["r-orphan"] * 5, "outcome": ["ghost"] * 5, "ms": [1.0] * 5,
                             "ghost_col": [1] * 5}), parts / REQ / "r-orphan" / "part-00001.parquet")
    # ... parts that are not Parquet, or cut short (reading them at all would fail) ...
    (parts / REQ / "r-broken").mkdir()
    (parts / REQ / "r-broken" / "part-00001.parquet").write_bytes(b"not parquet at all")
    (parts / REQ / "r-broken" / "part-00002.parquet").write_bytes(b"PAR1" + b"x" * 40 + b"\x10\0\0\0PAR1")
    # ... a copy of a listed run's part under an unlisted folder, and a table only orphans have
    (parts / REQ / "r-copy").mkdir()
    shutil.copy(sorted((parts / REQ / a).glob("*.parquet"))[0], parts / REQ / "r-copy" / "part-00001.parquet")
    (parts / "t_cat_orphan_only" / "r-orphan").mkdir(parents=True)
    pq.write_table(pa.table({"run_id": ["r-orphan"], "x": [1]}),
                   parts / "t_cat_orphan_only" / "r-orphan" / "part-00001.parquet")
    before = _tree(parts)

    s = Store(path)  # opening the existing store works
    assert {r["run_id"] for r in s.list_runs()} == {a, b}
    assert _counts(s) == {a: 4, b: 1}
    assert s.query(f"SELECT count(*) AS n FROM {REQ}") == [{"n": 5}]
    assert s.query_arrow(f"SELECT * FROM {REQ}").column_names == ["run_id", "outcome", "ms"]
    tbl = s.table(REQ)
    assert tbl.num_rows == 5 and "ghost_col" not in tbl.column_names
    assert "ghost" not in tbl.column("outcome").to_pylist()
    assert s.table(REQ, a).num_rows == 4
    assert "t_cat_orphan_only" not in s.table_names()
    with pytest.raises(KeyError):
        s.table("t_cat_orphan_only")
    with pytest.raises(KeyError):  # an orphan folder is no run
        s.table(REQ, "r-orphan")
    exported = s.export(a, tmp_path / "out")
    assert pq.read_table(tmp_path / "out" / a / f"{REQ}.parquet").num_rows == 4
    assert {p.name for p in exported} == {"run.json", f"{REQ}.parquet", f"{FREE}.parquet"}

    # the store still takes new runs, and reads them; the orphans stay as they were
    c = _write_run(s, {"ok": 2}, seed=3)
    assert _counts(Store(path)) == {a: 4, b: 1, c: 2}
    after = _tree(parts)
    assert {k: v for k, v in after.items() if k in before} == before


def test_outside_reader_view_leaves_out_unlisted_runs(tmp_path):
    path = tmp_path / "desim.duckdb"
    store = Store(path)
    a = _write_run(store, {"ok": 2})
    (store.parts_dir / REQ / "r-orphan").mkdir()
    pq.write_table(pa.table({"run_id": ["r-orphan"] * 7, "outcome": ["ghost"] * 7, "ms": [0.0] * 7}),
                   store.parts_dir / REQ / "r-orphan" / "part-00001.parquet")
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert con.execute(f"SELECT run_id, count(*) FROM {REQ} GROUP BY 1").fetchall() == [(a, 2)]
    finally:
        con.close()


# --------------------------------------------------------------------------- query(..., run=)


def test_query_run_narrows_every_table_to_those_runs(tmp_path):
    store = Store(tmp_path / "desim.duckdb")
    a = _write_run(store, {"ok": 3, "late": 1}, seed=1)
    with store.run("run", "cat", seed=2) as hb:
        hb.append(REQ, [{"outcome": "ok"}, {"outcome": "lost"}, {"outcome": "lost"}])
    b = hb.run_id
    sql = f"SELECT outcome, count(*) AS n FROM {REQ} GROUP BY outcome ORDER BY outcome"

    assert store.query(sql, run=a) == [{"outcome": "late", "n": 1}, {"outcome": "ok", "n": 3}]
    assert store.query(sql, run=b) == [{"outcome": "lost", "n": 2}, {"outcome": "ok", "n": 1}]
    assert store.query(sql, run=hb) == store.query(sql, run=b)  # a RunHandle
    assert store.query(sql, run="latest") == store.query(sql, run=b)
    assert store.query(sql, run=a[:-1]) == store.query(sql, run=a)  # a unique prefix
    assert store.query(sql, run=b[-6:]) == store.query(sql, run=b)  # a unique suffix
    both = [{"outcome": "late", "n": 1}, {"outcome": "lost", "n": 2}, {"outcome": "ok", "n": 4}]
    assert store.query(sql, run=[a, b]) == both
    assert store.query(sql, run=(b, a, b)) == both  # order and repeats do not matter
    assert store.query(sql) == both  # the old call: every listed run
    assert store.query(sql, run=[]) == []  # no runs chosen: no rows

    # run_id stays a column; `runs` holds the chosen runs too; params still work
    assert _counts(store, run=a) == {a: 4}
    assert _counts(store, run=[a, b]) == {a: 4, b: 3}
    assert store.query("SELECT run_id, seed FROM runs", run=b) == [{"run_id": b, "seed": 2}]
    assert store.query(f"SELECT count(*) AS n FROM {REQ} r JOIN runs USING (run_id) WHERE outcome = ?",
                       ["ok"], run=b) == [{"n": 1}]
    assert store.query(f"SELECT count(*) AS n FROM {FREE}", run=b) == [{"n": 0}]  # a has notes, b none
    assert store.query(f"SELECT count(*) AS n FROM {FREE}", run=a) == [{"n": 1}]
    arrow = store.query_arrow(f"SELECT * FROM {REQ}", run=b)
    assert arrow.num_rows == 3 and set(arrow.column("run_id").to_pylist()) == {b}
    assert store.query_arrow(sql, run=a).to_pylist() == store.query(sql, run=a)


def test_a_bad_run_ref_is_one_line(tmp_path):
    empty = Store(tmp_path / "empty.duckdb")
    with pytest.raises(KeyError) as ei:
        empty.query(f"SELECT count(*) FROM {REQ}", run="latest")
    assert "no `latest` run" in _one_line(ei.value)

    store = Store(tmp_path / "desim.duckdb")
    a = store.begin_run("run", "x", run_id="r-20240101-000000-aaa111")
    store.begin_run("run", "x", run_id="r-20240101-000000-aaa222")
    for bad, words in (("r-nope", "no run matches"), ("r-20240101-000000-aaa", "ambiguous"),
                       ("", "non-empty string"), (5, "non-empty string"),
                       ([a, "r-nope"], "no run matches"), ([a, None], "non-empty string")):
        for call in (store.query, store.query_arrow):
            with pytest.raises(KeyError) as ei:
                call(f"SELECT count(*) FROM {REQ}", run=bad)
            assert words in _one_line(ei.value), (bad, str(ei.value))
        with pytest.raises(KeyError) as ei:
            store.table(REQ, bad)
        assert words in _one_line(ei.value)
