"""Tests for desim.store: roundtrip, lifecycle, lookup, export, concurrent writers + reader."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

import desim.models.warehouse.tables  # noqa: F401  (the producers declare their tables)
import desim.network.tables  # noqa: F401
import desim.policies.tables  # noqa: F401
from desim.store import DEFAULT_STORE, KNOWN_TABLES, TABLES, Store, declare_table, table_schema

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_git(monkeypatch):
    monkeypatch.setenv("DESIM_CODE_VERSION", "test-version")


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "fresh" / "nested" / "desim.duckdb")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_default_path_and_fresh_store(store):
    assert DEFAULT_STORE == Path("runs") / "desim.duckdb"
    assert not store.path.exists()
    assert store.list_runs() == []  # reading a nonexistent store is fine and creates nothing
    assert store.table("timeseries").num_rows == 0
    assert set(store.table("contention").column_names) == {"run_id", "x", "y", "blocked", "collisions", "cell"}
    with pytest.raises(KeyError, match="no run matches"):
        store.get_run("r-nope")
    with pytest.raises(KeyError, match="no table"):
        store.table("no_such_table")


def test_roundtrip(store, tmp_path):
    cfg = {"agents": 4, "lr": np.float32(0.5), "shape": np.array([3, 4]), "bad": float("nan")}
    rid = store.begin_run("run", "tiny", "name: tiny\n", 7, "greedy", cfg)
    assert rid.startswith("r-") and len(rid) == len("r-20240101-000000-abcdef")
    run = store.get_run(rid)
    assert run["status"] == "running" and run["seed"] == 7 and run["brain"] == "greedy"
    assert run["config"] == {"agents": 4, "lr": 0.5, "shape": [3, 4], "bad": None}
    assert run["code_version"] == "test-version" and run["pid"] == os.getpid()

    store.append(rid, "timeseries", {"t": np.arange(10.0), "metric": "throughput", "value": np.ones(10)})
    store.append(rid, "timeseries", [{"t": 10.0, "metric": "queue", "value": 2}])
    store.append(rid, "contention", {"x": [0, 1], "y": [2, 3], "blocked": [5, 0], "collisions": [1, 0]})
    store.append(rid, "events", [{"t": 1.5, "kind": "collision", "agent": 2, "detail": {"with": 3}}])
    store.append(rid, "train_curves", pa.table({"step": [1, 2], "wall_s": [0.1, 0.2], "metric": ["loss"] * 2,
                                                 "value": [1.0, 0.5], "algo": ["ppo"] * 2}))
    store.append(rid, "latency_samples", {"link": ["a-b", "b-c"], "delay_ms": [1.5, 3.0]})  # undeclared
    assert store.append(rid, "timeseries", {"t": [], "metric": [], "value": []}) is None
    with pytest.raises(ValueError, match="different lengths"):
        store.append(rid, "timeseries", {"t": [1, 2], "metric": "m", "value": [1]})
    with pytest.raises(ValueError, match="missing"):
        store.append(rid, "timeseries", {"t": [1]})
    with pytest.raises(ValueError, match="invalid table"):
        store.append(rid, "runs", {"a": [1]})
    with pytest.raises(KeyError):
        store.append("r-unknown", "timeseries", {"t": [1], "metric": "m", "value": [1]})
    store.finish_run(rid, summary={"throughput": 1.25, "n": np.int64(3)})
    with pytest.raises(ValueError, match="finished run"):
        store.append(rid, "timeseries", {"t": [1.0], "metric": "m", "value": [1.0]})
    with pytest.raises(ValueError, match="finished run"):  # also from a fresh Store/process
        Store(store.path).append(rid, "timeseries", {"t": [1.0], "metric": "m", "value": [1.0]})

    run = store.get_run(rid)
    assert run["status"] == "complete" and run["finished_at"] >= run["started_at"]
    assert run["summary"] == {"throughput": 1.25, "n": 3}
    assert run["tables"]["timeseries"] == {"parts": 2, "rows": 11}
    ts = store.table("timeseries", run_ids=[rid])
    assert ts.num_rows == 11 and set(ts.column("run_id").to_pylist()) == {rid}
    ev = store.table("events", as_dicts=True)
    assert ev == [{"run_id": rid, "t": 1.5, "kind": "collision", "agent": "2", "detail": '{"with": 3}'}]
    assert store.table("latency_samples").column("delay_ms").to_pylist() == [1.5, 3.0]
    assert "latency_samples" in store.table_names()
    res = store.query(
        "SELECT r.scenario, sum(t.value) AS s FROM runs r JOIN timeseries t USING (run_id) "
        "WHERE t.metric = ? GROUP BY 1", ["throughput"])
    assert res == [{"scenario": "tiny", "s": 10.0}]
    assert store.query_arrow("SELECT count(*) AS n FROM contention").column("n").to_pylist() == [2]

    # outside readers can open the catalog read-only and use its views
    con = duckdb.connect(str(store.path), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM timeseries").fetchone()[0] == 11
        assert con.execute("SELECT count(*) FROM contention").fetchone()[0] == 2
        assert con.execute("SELECT count(*) FROM net_links").fetchone()[0] == 0  # empty typed view
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    finally:
        con.close()

    # a second Store object (another process, in effect) sees everything
    again = Store(store.path)
    assert [r["run_id"] for r in again.list_runs()] == [rid]
    assert again.table("train_curves").num_rows == 2


def test_lifecycle_context_manager(store):
    with store.run("train", "s", seed=1, brain="ppo", config={"a": 1}) as run:
        run.append("train_curves", {"step": [1], "metric": "loss", "value": [0.3]})
        run.summary["final_loss"] = 0.3
    ok = store.get_run(run.run_id)
    assert ok["status"] == "complete" and ok["summary"] == {"final_loss": 0.3}
    assert ok["kind"] == "train"

    with pytest.raises(ValueError, match="boom"):
        with store.run("run", "s") as run:
            run.append("timeseries", {"t": [0.0], "metric": "m", "value": [1.0]})
            raise ValueError("boom")
    failed = store.get_run(run.run_id)
    assert failed["status"] == "failed" and failed["reason"] == "ValueError: boom"
    assert "raise ValueError" in failed["traceback"]
    assert failed["tables"] == {"timeseries": {"parts": 1, "rows": 1}}

    with pytest.raises(KeyboardInterrupt):
        with store.run("sweep", "s") as run:
            raise KeyboardInterrupt
    assert store.get_run(run.run_id)["status"] == "interrupted"

    rid = store.begin_run("run")
    store.mark(rid, "failed", "watchdog: stalled")
    got = store.get_run(rid)
    assert got["status"] == "failed" and got["reason"] == "watchdog: stalled" and got["finished_at"]
    with pytest.raises(ValueError):
        store.mark(rid, "bogus", "x")
    with pytest.raises(ValueError):
        store.begin_run("bogus-kind")

    assert {r["status"] for r in store.list_runs()} == {"complete", "failed", "interrupted"}
    assert [r["kind"] for r in store.list_runs(kind="train")] == ["train"]
    assert len(store.list_runs(limit=2)) == 2
    assert len(store.list_runs(status="failed")) == 2


def test_crashed_run_after_sigkill(store):
    script = textwrap.dedent(f"""
        import sys, time
        from desim.store import Store
        s = Store({str(store.path)!r})
        rid = s.begin_run("run", "crashy", seed=3)
        s.append(rid, "timeseries", {{"t": [0.0], "metric": "m", "value": [1.0]}})
        print(rid, flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env=_env(), cwd=ROOT)
    try:
        rid = proc.stdout.readline().strip()
        assert rid.startswith("r-")
        assert store.get_run(rid)["status"] == "running"  # writer alive
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
    run = store.get_run(rid)
    assert run["status"] == "crashed" and run["stored_status"] == "running"
    assert run["finished_at"] is None
    assert [r["status"] for r in store.list_runs()] == ["crashed"]
    assert store.list_runs(status="crashed")[0]["run_id"] == rid
    assert store.table("timeseries", rid).num_rows == 1  # its parts are still readable


def test_unique_prefix_lookup(store):
    a = store.begin_run("run", run_id="r-20240101-000000-aaaaaa")
    b = store.begin_run("run", run_id="r-20240101-000000-aabbbb")
    c = store.begin_run("run", run_id="r-20240102-000000-cccccc")
    assert store.get_run("r-20240102")["run_id"] == c
    assert store.get_run("r-20240101-000000-aaa")["run_id"] == a
    assert store.resolve("aabbbb") == b  # unique hex suffix
    with pytest.raises(KeyError, match="ambiguous"):
        store.get_run("r-20240101")
    with pytest.raises(KeyError, match="no run matches"):
        store.get_run("r-1999")
    with pytest.raises(ValueError, match="already exists"):
        store.begin_run("run", run_id=a)
    store.append(a, "timeseries", {"t": [1.0], "metric": "m", "value": [1.0]})
    assert store.table("timeseries", run_ids=["r-20240101-000000-aaa"]).num_rows == 1
    assert store.table("timeseries", run_ids=[c]).num_rows == 0
    store.finish_run("r-20240102", summary={"x": 1})
    assert store.get_run(c)["status"] == "complete"


def test_export_parquet(store, tmp_path):
    rid = store.begin_run("run", "exp", seed=1)
    other = store.begin_run("run", "other", seed=2)
    for i in range(3):
        store.append(rid, "timeseries", {"t": [float(i)], "metric": "m", "value": [float(i)]})
    store.append(other, "timeseries", {"t": [9.0], "metric": "m", "value": [9.0]})
    store.append(rid, "net_links", {"src": ["a"], "dst": ["b"], "loss": [0.01]})
    store.finish_run(rid)
    paths = store.export_parquet(rid, tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == ["net_links.parquet", "run.parquet", "timeseries.parquet"]
    con = duckdb.connect()
    try:
        out = tmp_path / "out"
        assert con.execute(f"SELECT count(*), sum(value) FROM '{out}/timeseries.parquet'").fetchone() == (3, 3.0)
        assert con.execute(f"SELECT run_id, status, scenario FROM '{out}/run.parquet'").fetchall() == [
            (rid, "complete", "exp")]
        assert con.execute(f"SELECT src, dst, loss FROM '{out}/net_links.parquet'").fetchall() == [("a", "b", 0.01)]
    finally:
        con.close()


_WRITER = """
import json, sys, time, random
import numpy as np
from desim.store import Store
path, out, seconds, wid = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
s = Store(path)
rng = random.Random(wid)
written = {}
end = time.monotonic() + seconds
while time.monotonic() < end or len(written) < 3:  # at least 3 runs each, however slow the machine
    with s.run("sweep" if wid == "0" else "train", f"w{wid}", seed=len(written), config={"w": wid}) as run:
        n = 0
        for k in range(rng.randint(3, 12)):
            m = rng.randint(1, 200)
            run.append("timeseries", {"t": np.arange(m, dtype=float), "metric": "m", "value": np.ones(m)})
            run.append("train_curves", {"step": [k], "metric": "loss", "value": [1.0 / (k + 1)]})
            n += m
        if len(written) % 3 == 0:
            s.update_summary(run.run_id, {"partial": n})
        run.summary["rows"] = n
    written[run.run_id] = n
json.dump(written, open(out, "w"))
"""

_READER = """
import json, os, sys, time
import desim.models.warehouse.tables, desim.policies.tables  # empty typed views before the first part
from desim.store import Store
path, out, stop = sys.argv[1], sys.argv[2], sys.argv[3]
s = Store(path)
errors, seen_runs, per_run, total_prev, iters, totals, saw_running = [], 0, {}, 0, 0, set(), False
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    done = os.path.exists(stop)
    try:
        runs = s.list_runs()
        counts = {r["run_id"]: r["n"] for r in s.query(
            "SELECT run_id, count(*) AS n FROM timeseries GROUP BY run_id")}
        total = s.query("SELECT count(*) AS n FROM timeseries")[0]["n"]
        steps = s.table("train_curves").num_rows
        if len(runs) < seen_runs:
            errors.append(f"run count went down {seen_runs} -> {len(runs)}")
        seen_runs = len(runs)
        if total < total_prev:
            errors.append(f"total rows went down {total_prev} -> {total}")
        total_prev = total
        totals.add(total)
        saw_running = saw_running or any(r["status"] == "running" for r in runs)
        for rid, n in counts.items():
            if n < per_run.get(rid, 0):
                errors.append(f"{rid}: rows went down {per_run[rid]} -> {n}")
            per_run[rid] = n
        for r in runs:
            if r["status"] not in ("running", "complete"):
                errors.append(f"{r['run_id']}: unexpected status {r['status']}")
            if r["status"] == "complete":  # listed complete => all its rows are visible
                want = r["tables"]["timeseries"]["rows"]
                if counts.get(r["run_id"]) != want or r["summary"]["rows"] != want:
                    errors.append(f"{r['run_id']}: complete with {counts.get(r['run_id'])} rows, want {want}")
        iters += 1
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
    if done:
        break
json.dump({"errors": errors, "iters": iters, "final": per_run, "total": total_prev,
           "distinct_totals": len(totals), "saw_running": saw_running}, open(out, "w"))
"""


def test_concurrent_writers_and_reader(tmp_path):
    path = tmp_path / "conc" / "desim.duckdb"
    Store(path).list_runs()  # nonexistent store: no error
    stop = tmp_path / "stop"
    (tmp_path / "writer.py").write_text(_WRITER)
    (tmp_path / "reader.py").write_text(_READER)
    reader = subprocess.Popen([sys.executable, str(tmp_path / "reader.py"), str(path),
                               str(tmp_path / "reader.json"), str(stop)], env=_env(), cwd=ROOT)
    writers = [subprocess.Popen([sys.executable, str(tmp_path / "writer.py"), str(path),
                                 str(tmp_path / f"writer{i}.json"), "4", str(i)], env=_env(), cwd=ROOT)
               for i in range(2)]
    try:
        for w in writers:
            assert w.wait(60) == 0
    finally:
        stop.touch()
        for w in writers:
            if w.poll() is None:
                w.kill()
        assert reader.wait(60) == 0

    written: dict[str, int] = {}
    for i in range(2):
        written.update(json.loads((tmp_path / f"writer{i}.json").read_text()))
    seen = json.loads((tmp_path / "reader.json").read_text())
    assert seen["errors"] == []
    # the reader really ran while the writers wrote: it saw live runs and growing data
    assert seen["iters"] >= 3 and seen["distinct_totals"] >= 2 and seen["saw_running"], seen
    assert len(written) >= 4

    s = Store(path)
    runs = s.list_runs()
    assert {r["run_id"] for r in runs} == set(written)
    assert all(r["status"] == "complete" for r in runs)
    counts = {r["run_id"]: r["n"] for r in s.query(
        "SELECT run_id, count(*) AS n FROM timeseries GROUP BY run_id")}
    assert counts == written
    for r in runs:
        assert r["tables"]["timeseries"]["rows"] == written[r["run_id"]]
        assert r["summary"]["rows"] == written[r["run_id"]]
    # whatever the reader saw last is at most what was finally written
    assert all(n <= written[rid] for rid, n in seen["final"].items())
    assert s.table("train_curves").num_rows == sum(r["tables"]["train_curves"]["rows"] for r in runs)
    assert set(KNOWN_TABLES) <= set(s.table_names())


# --------------------------------------------------------------------------- table declarations


def test_declared_schema_is_applied_on_append(store):
    declare_table("t_declared", {"t": pa.float64(), "n": pa.int64(), "who": pa.string(), "note": pa.string()},
                  required=("t", "n"))
    rid = store.begin_run("run", "decl")
    # ints become floats, floats-that-are-ints become ints, dicts become JSON text, a missing column nulls,
    # an extra column is kept
    store.append(rid, "t_declared", {"t": [1, 2], "n": [3.0, 4.0], "who": [7, 8], "extra": ["a", "b"],
                                     "note": [{"k": 1}, None]})
    tbl = store.table("t_declared")
    assert tbl.column_names == ["run_id", "t", "n", "who", "note", "extra"]
    assert tbl.schema.field("t").type == pa.float64() and tbl.schema.field("n").type == pa.int64()
    assert tbl.to_pylist()[0] == {"run_id": rid, "t": 1.0, "n": 3, "who": "7", "note": '{"k": 1}', "extra": "a"}
    store.append(rid, "t_declared", {"t": [5.0], "n": [1]})
    assert store.table("t_declared", as_dicts=True)[-1]["who"] is None
    with pytest.raises(ValueError, match=r"needs columns \['t', 'n'\]; missing \['n'\]"):
        store.append(rid, "t_declared", {"t": [1.0]})
    with pytest.raises(ValueError, match="can't become"):
        store.append(rid, "t_declared", {"t": ["not a number"], "n": [1]})
    # declared but never written: an empty view with the declared columns
    declare_table("t_declared_empty", {"a": pa.int64(), "b": pa.string()})
    assert store.table("t_declared_empty").column_names == ["run_id", "a", "b"]
    assert store.table("t_declared_empty").schema.field("a").type == pa.int64()


def test_undeclared_table_takes_any_columns(store):
    assert table_schema("t_free_form") is None
    rid = store.begin_run("run", "free")
    store.append(rid, "t_free_form", {"anything": [1, 2], "goes": ["x", "y"]})
    store.append(rid, "t_free_form", [{"other": 1.5}])  # different columns in another part
    tbl = store.table("t_free_form")
    assert set(tbl.column_names) == {"run_id", "anything", "goes", "other"} and tbl.num_rows == 3
    with pytest.raises(KeyError, match="no table"):
        store.table("t_never_written")


def test_declaring_a_table_twice():
    cols = {"t": pa.float64(), "kind": pa.string()}
    first = declare_table("t_twice", cols, required=("t",))
    assert declare_table("t_twice", dict(cols), required=["t"]) is first  # the same schema again: fine
    assert TABLES["t_twice"] is first and table_schema("t_twice") is first
    with pytest.raises(ValueError, match="already declared"):
        declare_table("t_twice", {"t": pa.int64(), "kind": pa.string()}, required=("t",))
    with pytest.raises(ValueError, match="already declared"):
        declare_table("t_twice", cols, required=("t", "kind"))
    with pytest.raises(ValueError, match="already declared"):
        declare_table("t_twice", None)
    with pytest.raises(ValueError, match="not declared"):
        declare_table("t_bad_required", cols, required=("nope",))
    with pytest.raises(ValueError, match="unsupported type"):
        declare_table("t_bad_type", {"x": pa.list_(pa.int64())})
    with pytest.raises(ValueError, match="invalid table name"):
        declare_table("runs", cols)
    # the warehouse and the network both declare the shared events table, identically
    from desim.models.warehouse.tables import EVENTS as wh_events
    from desim.network.tables import EVENTS as net_events

    assert wh_events is net_events is TABLES["events"]


def test_producers_declare_their_tables():
    assert {"timeseries", "contention", "paths", "events", "orders", "net_nodes", "net_links", "net_delays",
            "train_curves", "promotions"} <= set(TABLES)
    assert TABLES["train_curves"].required == ("step", "metric", "value")
    assert dict(TABLES["net_nodes"].columns) == {"node": pa.string(), "role": pa.string(), "zone": pa.int64()}


def test_recorded_warehouse_run_stores_its_network(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    path = tmp_path / "s.duckdb"
    out = subprocess.run([sys.executable, "-m", "desim.app.cli", "run", "scenarios/warehouse-tiny-event.toml",
                          "--until", "60", "--store", str(path)], capture_output=True, text=True, env=_env(),
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    s = Store(path)
    (run,) = s.list_runs()
    assert run["status"] == "complete"
    assert {"net_nodes", "net_links", "timeseries", "contention"} <= set(run["tables"])
    nodes = {r["node"]: r for r in s.table("net_nodes", run["run_id"], as_dicts=True)}
    links = s.table("net_links", run["run_id"])
    assert set(nodes) == set(links.column("src").to_pylist()) | set(links.column("dst").to_pylist())
    # roles match the warehouse topology: a core switch, a controller per zone, robots on their zone's controller
    assert nodes["core"]["role"] == "switch" and nodes["core"]["zone"] is None
    controllers = {n: r["zone"] for n, r in nodes.items() if r["role"] == "controller"}
    assert controllers and all(n == f"zone-{z}" for n, z in controllers.items())
    robots = [r for r in nodes.values() if r["role"] == "robot"]
    assert len(robots) == run["summary"]["robots"]
    assert all(r["node"].startswith(f"robot-{r['zone']}-") for r in robots)
    assert {r["role"] for r in nodes.values()} <= {"switch", "controller", "robot", "service"}
    pairs = set(zip(links.column("src").to_pylist(), links.column("dst").to_pylist()))
    assert all((f"zone-{r['zone']}", r["node"]) in pairs for r in robots)
