"""desim.store on bad paths (StoreError, nothing touched), run refs (`latest`,
ambiguous prefixes) and export (one folder per run, Parquet and CSV)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import desim.models.warehouse.tables  # noqa: F401  (the producers declare their tables)
import desim.network.tables  # noqa: F401
import desim.store.catalog as catalog_mod
from desim.store import Store, StoreError


@pytest.fixture(autouse=True)
def _no_git(monkeypatch):
    monkeypatch.setenv("DESIM_CODE_VERSION", "test-version")


@pytest.fixture(scope="module")
def real_store_bytes(tmp_path_factory) -> bytes:
    """The bytes of a real store made here (a few runs), checked to carry DuckDB's magic."""
    path = tmp_path_factory.mktemp("real") / "real.duckdb"
    s = Store(path)
    for i in range(20):
        rid = s.begin_run("run", "real", seed=i, config={"i": i, "pad": "x" * 500})
        s.finish_run(rid, summary={"i": i})
    data = path.read_bytes()
    assert data[8:12] == b"DUCK"  # DuckDB's magic bytes sit at offset 8
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (20,)
    finally:
        con.close()
    return data


# --------------------------------------------------------------------------- bad store paths


def _snapshot(path: Path) -> tuple:
    """What must not change: the thing itself (bytes or listing, mtime) and its folder's listing."""
    st_ = path.stat()
    body = sorted(os.listdir(path)) if path.is_dir() else path.read_bytes()
    return body, st_.st_mtime_ns, st_.st_size, sorted(os.listdir(path.parent))


def _assert_refused(path: Path, fn) -> StoreError:
    before = _snapshot(path)
    with pytest.raises(StoreError) as ei:
        fn()
    msg = str(ei.value)
    assert "\n" not in msg and msg.strip() == msg and msg, msg
    assert str(path) in msg, msg
    assert "Traceback" not in msg and "duckdb." not in msg
    assert _snapshot(path) == before  # bytes, mtime and the folder's listing: nothing created
    assert not path.with_name(path.name + ".parts").exists()
    assert not path.with_name(path.name + ".wal").exists()
    assert not any(n.endswith((".wal", ".lock", ".tmp")) for n in os.listdir(path.parent))
    return ei.value


def _every_open(path: Path) -> list:
    """Every way in: the constructor, and (on a Store made while the path was
    free) each reader and writer, which open the catalog themselves."""
    free = path.with_name(path.name + ".free")
    store = Store(free)  # nothing there yet: fine
    store.path = store._catalog.path = path  # now point it at the bad thing
    store.parts_dir = store._parts.root = path.with_name(path.name + ".parts")
    return [
        lambda: Store(path),
        store.list_runs,
        lambda: store.get_run("latest"),
        lambda: store.resolve("r-"),
        lambda: store.table("timeseries", "r-x"),
        lambda: store.begin_run("run", "s"),
        lambda: store.append("r-x", "timeseries", {"t": [1.0], "metric": "m", "value": [1.0]}),
    ]


def _make_dir(p: Path, real: bytes) -> None:
    p.mkdir()
    (p / "inside.txt").write_text("keep me\n")


# kind: (make it, words in the message, whether the constructor's cheap check sees it)
BAD = {
    "directory": (_make_dir, "is a folder", True),
    "text": (lambda p, real: p.write_text("run_id,status\nr-1,complete\n" * 40), "not a duckdb store", True),
    "random-bytes": (lambda p, real: p.write_bytes(os.urandom(40000)), "not a duckdb store", True),
    "truncated-3000": (lambda p, real: p.write_bytes(real[:3000]), "truncated", True),
    "empty": (lambda p, real: p.write_bytes(b""), "empty file", True),
    # cut past the headers: only DuckDB itself can tell, on the first open (still refused, untouched)
    "truncated-13000": (lambda p, real: p.write_bytes(real[:13000]), "cannot be", False),
    "truncated-half": (lambda p, real: p.write_bytes(real[:len(real) // 2]), "cannot be", False),
    "corrupt-after-header": (lambda p, real: p.write_bytes(real[:4096] + os.urandom(30000)), "corrupt", False),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_store_path_is_one_line_and_untouched(kind, tmp_path, real_store_bytes):
    make, words, cheap = BAD[kind]
    path = tmp_path / "runs" / "desim.duckdb"
    path.parent.mkdir()
    make(path, real_store_bytes)
    fns = _every_open(path)
    if not cheap:
        assert Store(path).path == path  # the constructor reads 12 bytes only; the first open refuses
        fns = fns[1:]
    for fn in fns:
        assert words in str(_assert_refused(path, fn)).lower()


def test_corrupt_store_is_refused_at_once_not_retried_as_a_lock(tmp_path, real_store_bytes):
    """DuckDB's "checksum ... in block at location" is damage, not the file lock
    ("block" holds "lock"): refused at once, not retried for lock_timeout."""
    path = tmp_path / "c.duckdb"
    path.write_bytes(real_store_bytes[:4096] + os.urandom(30000))
    s = Store(path, lock_timeout=30)
    t0 = time.monotonic()
    err = _assert_refused(path, s.list_runs)
    assert time.monotonic() - t0 < 10 and "block" in str(err)


def test_truncated_store_is_refused_by_constructor_cheaply(tmp_path, real_store_bytes):
    path = tmp_path / "t.duckdb"
    path.write_bytes(real_store_bytes[:3000])
    err = _assert_refused(path, lambda: Store(path))
    assert "3000 bytes" in str(err)


def test_unreadable_store_file(tmp_path, real_store_bytes, monkeypatch):
    path = tmp_path / "locked.duckdb"
    path.write_bytes(real_store_bytes)
    if os.geteuid() != 0:  # root reads anything: then only the simulated denial below
        path.chmod(0)
        try:
            err = _assert_refused(path, lambda: Store(path))
            assert "not readable" in str(err)
        finally:
            path.chmod(0o600)

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(catalog_mod, "open", denied, raising=False)
    for fn in _every_open(path):
        assert "not readable" in str(_assert_refused(path, fn))


def test_store_under_a_file_is_refused(tmp_path):
    f = tmp_path / "plain.txt"
    f.write_text("hello\n")
    with pytest.raises(StoreError, match="a folder above it is a file") as ei:
        Store(f / "desim.duckdb")
    assert str(f) in str(ei.value) and "\n" not in str(ei.value)
    assert f.read_text() == "hello\n"


def test_missing_store_is_still_created(tmp_path):
    path = tmp_path / "new" / "deeper" / "desim.duckdb"
    s = Store(path)
    assert s.list_runs() == [] and not path.exists()  # reading creates nothing
    rid = s.begin_run("run", "x")
    assert path.read_bytes()[8:12] == b"DUCK"
    assert Store(path).get_run("latest")["run_id"] == rid


def test_good_store_opens(tmp_path, real_store_bytes):
    path = tmp_path / "copy.duckdb"
    path.write_bytes(real_store_bytes)
    s = Store(path)
    assert len(s.list_runs()) == 20
    s.begin_run("run", "more")
    assert len(Store(path).list_runs()) == 21


_magic_junk = st.binary(min_size=12, max_size=30000).map(lambda b: b[:8] + b"DUCK" + b[12:])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=30000), _magic_junk))
def test_random_bytes_never_open_and_stay_unchanged(data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "junk.duckdb"
        path.write_bytes(data)
        before = (path.read_bytes(), path.stat().st_mtime_ns)
        fns = _every_open(path)
        for fn in (fns[0], fns[1], fns[5]):  # constructor, a reader, a writer
            with pytest.raises(StoreError) as ei:
                fn()
            msg = str(ei.value)
            assert "\n" not in msg and str(path) in msg
        assert (path.read_bytes(), path.stat().st_mtime_ns) == before
        assert sorted(os.listdir(d)) == ["junk.duckdb"]


# --------------------------------------------------------------------------- run refs


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "s" / "desim.duckdb")


def test_latest_is_the_newest_by_start_time(store):
    with pytest.raises(KeyError, match="no runs") as ei:
        store.resolve("latest")
    assert "\n" not in str(ei.value.args[0])
    first = store.begin_run("run", run_id="r-zzzz-first")  # sorts last by id
    assert store.resolve("latest") == first
    second = store.begin_run("run", run_id="r-aaaa-second")  # newer, sorts first by id
    store.finish_run(first)  # finishing later does not make it the latest
    assert store.resolve("latest") == second
    assert store.get_run("latest")["run_id"] == second
    assert store.list_runs()[0]["run_id"] == store.resolve("latest")
    store.append(store.resolve("latest"), "timeseries", {"t": [1.0], "metric": "m", "value": [2.0]})
    assert store.table("timeseries", "latest").num_rows == 1
    assert store.table("timeseries", first).num_rows == 0
    named = store.begin_run("run", run_id="latest")  # a run really called 'latest' is found by its id
    assert named == "latest" and store.resolve("latest") == "latest"


def test_full_id_prefix_and_suffix_still_resolve(store):
    a = store.begin_run("run", run_id="r-20240101-000000-aaaaaa")
    b = store.begin_run("run", run_id="r-20240101-000000-bbbbbb")
    assert store.resolve(a) == a and store.resolve("r-20240101-000000-b") == b and store.resolve("aaaaaa") == a
    with pytest.raises(KeyError) as ei:
        store.resolve("r-1999")
    msg = ei.value.args[0]
    assert "no run matches 'r-1999'" in msg and "\n" not in msg


def test_ambiguous_prefix_names_count_and_three_runs(store):
    ids = [store.begin_run("run", run_id=f"r-20240101-00000{i}-abc{i}") for i in range(5)]
    with pytest.raises(KeyError) as ei:
        store.resolve("r-2024")
    msg = ei.value.args[0]
    assert "\n" not in msg and "ambiguous" in msg and "5 runs match" in msg
    assert sum(i in msg for i in ids) == 3 and "..." in msg
    assert msg.endswith("give more of the id, or `latest`")
    assert store.resolve("abc1") == ids[1]  # a unique suffix
    two = [store.begin_run("run", run_id=f"q-{i}-tail") for i in range(2)]
    with pytest.raises(KeyError) as ei:
        store.resolve("-tail")
    msg = ei.value.args[0]
    assert "2 runs match" in msg and all(i in msg for i in two) and "..." not in msg
    assert "give more of the id, or `latest`" in msg


# --------------------------------------------------------------------------- export


def _two_runs(store) -> tuple[str, str]:
    a = store.begin_run("run", "alpha", seed=1, config={"robots": 4, "name": "alpha"})
    for i in range(3):
        store.append(a, "timeseries", {"t": [float(i)], "metric": "m", "value": [float(i)]})
    store.append(a, "net_links", {"src": ["a", "b"], "dst": ["b", "c"], "loss": [0.01, 0.02]})
    store.finish_run(a, summary={"deliveries": 7})
    b = store.begin_run("run", "beta", seed=2, config={"robots": 8})
    store.append(b, "timeseries", {"t": [9.0, 10.0], "metric": "m", "value": [9.0, 10.0]})
    store.finish_run(b)
    return a, b


def _read_back(path: Path):
    return pq.read_table(path) if path.suffix == ".parquet" else pcsv.read_csv(path)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_one_folder_per_run(store, tmp_path, fmt):
    a, b = _two_runs(store)
    out = tmp_path / "exports"
    pa_ = store.export(a, out, fmt)
    pb = store.export(b, out, fmt=fmt)
    assert all(p.parent == out / a for p in pa_) and all(p.parent == out / b for p in pb)
    assert sorted(p.name for p in pa_) == sorted(["run.json", f"net_links.{fmt}", f"timeseries.{fmt}"])
    assert sorted(p.name for p in pb) == ["run.json", f"timeseries.{fmt}"]
    assert sorted(os.listdir(out)) == sorted([a, b])  # the second export did not touch the first
    for rid, paths in ((a, pa_), (b, pb)):
        assert sorted(os.listdir(out / rid)) == sorted(p.name for p in paths)
        run = json.loads((out / rid / "run.json").read_text())
        stored = store.get_run(rid)
        assert run["run_id"] == rid and run["config"] == stored["config"] and run["summary"] == stored["summary"]
        assert run["status"] == "complete" and run["tables"] == stored["tables"]
        for p in paths:
            if p.name == "run.json":
                continue
            table = p.name.split(".")[0]
            got = _read_back(p)
            assert got.num_rows == store.table(table, rid).num_rows == stored["tables"][table]["rows"]
            assert set(got.column("run_id").to_pylist()) == {rid}
            con = duckdb.connect()
            try:
                assert con.execute(f"SELECT count(*) FROM '{p}'").fetchone()[0] == got.num_rows
            finally:
                con.close()
    assert json.loads((out / a / "run.json").read_text())["summary"] == {"deliveries": 7}
    ts = _read_back(out / a / f"timeseries.{fmt}")
    assert sorted(ts.column("value").to_pylist()) == [0.0, 1.0, 2.0]


def test_export_latest_and_prefix(store, tmp_path):
    a, b = _two_runs(store)
    paths = store.export("latest", tmp_path / "o")
    assert {p.parent.name for p in paths} == {b}


def test_export_into_a_file_is_refused(store, tmp_path):
    a, _ = _two_runs(store)
    f = tmp_path / "out.txt"
    f.write_text("not a folder\n")
    with pytest.raises(StoreError) as ei:
        store.export(a, f)
    msg = str(ei.value)
    assert msg == f"export folder {f} is a file, not a folder"
    assert f.read_text() == "not a folder\n" and sorted(os.listdir(tmp_path)) == ["out.txt", "s"]
    with pytest.raises(StoreError, match="is a file"):
        store.export(a, f / "deeper")


def test_export_refuses_a_non_empty_run_folder(store, tmp_path):
    a, _ = _two_runs(store)
    out = tmp_path / "o"
    first = store.export(a, out)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in first}
    with pytest.raises(StoreError) as ei:
        store.export(a, out, "csv")
    msg = str(ei.value)
    assert "\n" not in msg and str(out / a) in msg and "already holds" in msg
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in first} == before
    assert sorted(os.listdir(out / a)) == sorted(p.name for p in first)  # no csv crept in
    again = store.export(a, out, overwrite=True)
    assert sorted(again) == sorted(first)
    (tmp_path / "empty" / a).mkdir(parents=True)  # an existing empty run folder is fine
    assert store.export(a, tmp_path / "empty")


def test_export_bad_format_and_unknown_run_create_nothing(store, tmp_path):
    a, _ = _two_runs(store)
    with pytest.raises(ValueError, match="xlsx"):
        store.export(a, tmp_path / "o", "xlsx")
    with pytest.raises(KeyError, match="no run matches"):
        store.export("r-nope", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_failed_export_leaves_no_half_files(store, tmp_path, monkeypatch):
    a, _ = _two_runs(store)
    real_write = pq.write_table
    calls = []

    def flaky(table, where, *args, **kw):
        calls.append(where)
        if len(calls) == 2:
            Path(where).write_bytes(b"PAR1 half")  # a half file, then the failure
            raise OSError(28, "No space left on device")
        return real_write(table, where, *args, **kw)

    monkeypatch.setattr(pq, "write_table", flaky)
    with pytest.raises(OSError, match="No space"):
        store.export(a, tmp_path / "o" / "deep")
    assert len(calls) == 2
    assert not (tmp_path / "o").exists()  # the folders it made are gone again
    (tmp_path / "kept").mkdir()
    calls.clear()
    with pytest.raises(OSError):
        store.export(a, tmp_path / "kept")
    assert os.listdir(tmp_path / "kept") == []  # no half files, no staging folder
    monkeypatch.setattr(pq, "write_table", real_write)
    assert len(store.export(a, tmp_path / "kept")) == 3


def test_export_parquet_alias_keeps_its_layout(store, tmp_path):
    a, _ = _two_runs(store)
    paths = store.export_parquet(a, tmp_path / "flat")
    assert sorted(p.name for p in paths) == ["net_links.parquet", "run.parquet", "timeseries.parquet"]
    assert all(p.parent == tmp_path / "flat" for p in paths)
    assert pq.read_table(tmp_path / "flat" / "timeseries.parquet").num_rows == 3
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        store.export_parquet(a, f)
