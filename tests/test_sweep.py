"""Sweeps: identical results on the local pool and on Ray, resumable after a kill, one-line errors, a report."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_support import call, one_line_error
from desim.app.sweep import SWEEP_POINTS, execute, load_sweep, set_path
from desim.app.sweep_backends import LocalPool, RayBackend
from desim.store import Store

ROOT = Path(__file__).resolve().parents[1]
SWEEP = """
name = "tiny-robots"
base = "{base}"
until = {until}
replications = {reps}
seed = 3
metrics = ["throughput_per_hour", "deadlocks"]

[grid]
"warehouse.robots" = {robots}
"""


def sweep_file(tmp_path: Path, *, robots=(1, 2, 3), reps=2, until=120.0, base="warehouse-tiny-event.toml") -> Path:
    f = tmp_path / "sweep.toml"
    f.write_text(SWEEP.format(base=ROOT / "scenarios" / base, until=until, reps=reps, robots=list(robots)))
    return f


def _by_task(rows):
    return {(r["point"], r["rep"]): (r["seed"], r["trace_hash"], json.loads(r["metrics"])) for r in rows}


def test_points_tasks_and_common_random_numbers(tmp_path):
    sw = load_sweep(sweep_file(tmp_path))
    assert len(sw.points) == 3 and len(sw.tasks) == 6
    assert [t.data["warehouse"]["robots"] for t in sw.tasks] == [1, 1, 2, 2, 3, 3]
    # the same seeds in every arm: replication r has seed 3 + r at every point
    assert {(t.point, t.rep): t.seed for t in sw.tasks} == {(p, r): 3 + r for p in range(3) for r in range(2)}


def test_local_pool_and_ray_give_identical_results(tmp_path):
    sw = load_sweep(sweep_file(tmp_path))
    _, local = execute(sw, Store(tmp_path / "a.duckdb"), LocalPool(2))
    ray_backend = RayBackend(workers=2)
    try:
        assert int(ray_backend.ray.cluster_resources()["CPU"]) == 2
        _, on_ray = execute(sw, Store(tmp_path / "b.duckdb"), ray_backend)
    finally:
        ray_backend.close()
    a, b = _by_task(local), _by_task(on_ray)
    assert len(a) == 6 and a == b
    assert len({h for _, h, _ in a.values()}) == 6  # every run differs (points and seeds do)


def test_a_killed_sweep_resumes_without_recomputing_or_losing_a_run(tmp_path):
    f = sweep_file(tmp_path, robots=(1, 2, 3, 4), reps=3, until=1500.0)
    store = tmp_path / "s.duckdb"
    cmd = [sys.executable, "-m", "desim.app.cli", "sweep", str(f), "--workers", "1", "--store", str(store), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 300
        n = 0
        while time.time() < deadline:  # wait until some runs are stored, then kill the sweep and its workers
            time.sleep(0.5)
            if store.exists():
                try:
                    runs = Store(store).list_runs(kind="sweep")
                    tbl = Store(store).table(SWEEP_POINTS, runs[0]["run_id"]) if runs else None
                    n = 0 if tbl is None else tbl.num_rows
                except Exception:
                    n = 0
            if n >= 3:
                break
        assert n >= 3, "the sweep stored nothing in time"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    st = Store(store)
    sweep_id = st.list_runs(kind="sweep")[0]["run_id"]
    before = _by_task(st.table(SWEEP_POINTS, sweep_id).to_pylist())
    assert 3 <= len(before) < 12
    code, out, err = call("sweep", f, "--workers", "1", "--store", store, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["sweep_id"] == sweep_id and report["runs"] == 12
    rows = Store(store).table(SWEEP_POINTS, sweep_id).to_pylist()
    after = _by_task(rows)
    assert len(rows) == 12 == len(after)  # nothing ran twice (each run appends one row), nothing is missing
    assert all(after[k] == v for k, v in before.items())  # the finished runs were kept as they were
    assert Store(store).get_run(sweep_id)["status"] == "complete"
    # a third time: nothing left to run
    code, out, err = call("sweep", f, "--workers", "1", "--store", store, "--json")
    assert code == 0 and len(Store(store).table(SWEEP_POINTS, sweep_id).to_pylist()) == 12


@pytest.mark.parametrize("grid, field", [
    ('"warehouse.robotz" = [1, 2]', "warehouse.robotz"),
    ('"warehouse.robots" = [1, 0]', "point 1"),
    ('"warehouse.robots" = []', "grid"),
    ('"faults[3].duration" = [1.0]', "faults[3].duration"),
    ('"not a path!" = [1]', "not a path!"),
])
def test_a_bad_sweep_is_one_line_before_anything_runs(tmp_path, grid, field):
    f = tmp_path / "bad.toml"
    f.write_text(f'name = "x"\nbase = "{ROOT / "scenarios" / "warehouse-tiny.toml"}"\n[grid]\n{grid}\n')
    line = one_line_error(*call("sweep", f, "--store", tmp_path / "s.duckdb"))
    assert field in line, line
    assert not (tmp_path / "s.duckdb").exists() or not Store(tmp_path / "s.duckdb").list_runs()


def test_lhs_design_is_seeded_and_stratified(tmp_path):
    f = tmp_path / "lhs.toml"
    f.write_text(f'name = "x"\nbase = "{ROOT / "scenarios" / "network-partition.toml"}"\nuntil = 5.0\n'
                 '[lhs]\npoints = 8\nseed = 4\n"links.wireless.delay.mean" = [0.001, 0.2]\n"topology.robots_per_zone" = [4, 9]\n')
    a, b = load_sweep(f), load_sweep(f)
    assert a.points == b.points and len(a.points) == 8
    means = sorted(p["links.wireless.delay.mean"] for p in a.points)
    strata = [int((m - 0.001) / (0.199 / 8)) for m in means]
    assert strata == list(range(8))  # one point in each eighth of the range
    assert all(isinstance(p["topology.robots_per_zone"], int) for p in a.points)


def test_set_path_creates_tables_and_indexes_arrays():
    d = {"faults": [{"at": 1.0}]}
    set_path(d, "warehouse.orders.rate_per_hour", 10.0)
    set_path(d, "faults[0].duration", 30.0)
    assert d == {"faults": [{"at": 1.0, "duration": 30.0}], "warehouse": {"orders": {"rate_per_hour": 10.0}}}


def test_report_writes_markdown_with_plots_and_the_knee(tmp_path):
    f = sweep_file(tmp_path, robots=(1, 2, 4, 8, 12), reps=2, until=300.0, base="warehouse-tiny.toml")
    store = tmp_path / "s.duckdb"
    code, out, err = call("sweep", f, "--workers", "2", "--store", store, "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert [p["params"]["warehouse.robots"] for p in rep["points"]] == [1, 2, 4, 8, 12]
    code, out, err = call("report", "latest", "--store", store, "--out", tmp_path / "rep")
    assert code == 0, err
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "throughput_per_hour" in md and "(throughput_per_hour.png)" in md and "paired" in md
    assert (tmp_path / "rep" / "throughput_per_hour.png").stat().st_size > 5000
    assert "saturation" in md or rep.get("knee") is None


def test_fresh_starts_a_new_sweep_run(tmp_path):
    f = sweep_file(tmp_path, robots=(1, 2), reps=1, until=60.0, base="warehouse-tiny.toml")
    store = tmp_path / "s.duckdb"
    assert call("sweep", f, "--workers", "1", "--store", store, "--json")[0] == 0
    assert call("sweep", f, "--workers", "1", "--store", store, "--json")[0] == 0  # resumed: nothing new
    assert len(Store(store).list_runs(kind="sweep")) == 1
    code, out, err = call("sweep", f, "--workers", "1", "--store", store, "--json", "--fresh")
    assert code == 0, err
    runs = Store(store).list_runs(kind="sweep")
    assert len(runs) == 2 and json.loads(out)["sweep_id"] == runs[0]["run_id"]
    assert Store(store).table(SWEEP_POINTS, runs[0]["run_id"]).num_rows == 2
