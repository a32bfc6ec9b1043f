"""The CLI contract: `desim run --json`, `desim validate`, one-line errors."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NET = ROOT / "scenarios" / "network-partition.toml"


def desim(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "desim.app.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd or ROOT)


BASE = """
name = "t"
until = 5.0
[topology]
kind = "warehouse"
zones = 2
robots_per_zone = 2
[[traffic]]
from = "robot"
to = "own_controller"
rate = 5.0
"""

BAD = {
    "negative delay": (BASE + '[links.default]\ndelay = { dist = "normal", mean = -0.01 }\n', "links.default.delay.mean", "greater than or equal to 0"),
    "unknown node": (BASE + '[[faults]]\nat = 1.0\nkind = "isolate"\nnodes = ["zone-9"]\n', "faults[0]", "unknown node 'zone-9'"),
    "unknown distribution": (BASE + '[links.default]\ndelay = { dist = "weibull", mean = 0.01 }\n', "links.default.delay.dist", "'constant'"),
    "malformed toml": (BASE + "[links.default\n", "", "malformed TOML"),
    "unknown field": (BASE + "[jitter_buffer]\nenable = true\n", "jitter_buffer.enable", "unknown field"),
    "uniform below zero": (BASE + '[links.default]\ndelay = { dist = "uniform", mean = 0.01, jitter = 0.02 }\n', "links.default.delay", "negative"),
    "bad traffic target": (BASE + '[[traffic]]\nfrom = "robot"\nto = "nobody"\n', "traffic[1].to", "unknown node or role 'nobody'"),
    "fault on missing link": (BASE + '[[faults]]\nat = 1.0\nkind = "flap"\nduration = 2.0\nlinks = [["robot-0-0", "robot-1-1"]]\n', "faults[0].links", "no link between"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_scenario_gives_one_clear_line_and_exit_2(tmp_path, case, command):
    text, field, problem = BAD[case]
    f = tmp_path / "bad.toml"
    f.write_text(text)
    r = desim(command, f, "--no-store") if command == "run" else desim(command, f)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(f) in lines[0] and field in lines[0] and problem in lines[0], lines[0]


def test_disconnected_user_graph(tmp_path):
    (tmp_path / "g.txt").write_text("a b\nc d\n")
    f = tmp_path / "s.toml"
    f.write_text('name = "x"\n[topology]\nkind = "edgelist"\npath = "g.txt"\n')
    r = desim("validate", f)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "topology" in r.stderr and "disconnected" in r.stderr


def test_missing_file_and_bad_flags_are_one_line():
    for args in (["validate", "nope.toml"], ["run", NET, "--seed", "-3"], ["run", NET, "--until", "abc"], ["run", NET, "--frobnicate"]):
        r = desim(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_validate_ok_and_help():
    assert desim("validate", NET).returncode == 0
    h = desim("--help")
    assert h.returncode == 0 and "run" in h.stdout and "validate" in h.stdout
    for cmd in ("run", "validate"):
        assert desim(cmd, "--help").returncode == 0


def test_run_json_contract_and_determinism(tmp_path):
    a = desim("run", NET, "--seed", 4, "--until", 30, "--json", "--store", tmp_path / "s.duckdb")
    assert a.returncode == 0, a.stderr
    out = json.loads(a.stdout)
    for key in ("run_id", "seed", "sim_time", "events", "trace_hash"):
        assert key in out
    m = out["messages"]
    assert set(m) >= {"sent", "delivered", "dropped", "in_flight"}
    assert m["sent"] + m.get("duplicated", 0) == m["delivered"] + sum(m["dropped"].values()) + m["in_flight"]
    assert out["seed"] == 4 and out["sim_time"] == 30
    b = json.loads(desim("run", NET, "--seed", 4, "--until", 30, "--json", "--store", tmp_path / "s.duckdb").stdout)
    c = json.loads(desim("run", NET, "--seed", 5, "--until", 30, "--json", "--store", tmp_path / "s.duckdb").stdout)
    assert a and out["trace_hash"] == b["trace_hash"] and out["run_id"] != b["run_id"]
    assert c["trace_hash"] != out["trace_hash"]


def test_network_scenario_shows_its_partition():
    r = desim("run", NET, "--json", "--no-store")
    out = json.loads(r.stdout)
    assert out["messages"]["dropped"]["partition"] > 0
    assert ["start", "split"] == out["faults"][0][1:3] and out["faults"][1][1] == "end"
    assert out["conservation_ok"] is True


def test_human_summary(tmp_path):
    r = desim("run", NET, "--until", 10, "--no-store")
    assert r.returncode == 0 and "delivered" in r.stdout and "conservation" in r.stdout


def test_warehouse_run_json_store_and_runs_commands(tmp_path):
    store = tmp_path / "runs" / "w.duckdb"
    r = desim("run", "scenarios/warehouse-small.toml", "--seed", 1, "--brain", "greedy", "--until", 600, "--json", "--store", store)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("deliveries", "throughput_per_hour", "collisions", "deadlocks"):
        assert key in out
    assert set(out["order_latency"]) == {"p50", "p95", "p99"}
    o = out["orders"]
    assert set(o) == {"created", "completed", "failed", "pending"}
    assert o["created"] == o["completed"] + sum(o["failed"].values()) + o["pending"]
    assert out["deliveries"] > 10 and out["brain"] == "greedy"
    listed = json.loads(desim("runs", "list", "--store", store, "--json").stdout)
    assert [x["run_id"] for x in listed] == [out["run_id"]] and listed[0]["status"] == "complete"
    shown = desim("runs", "show", out["run_id"][-6:], "--store", store)
    assert shown.returncode == 0 and "contention" in shown.stdout and "timeseries" in shown.stdout
    exp = desim("runs", "export", out["run_id"], "--store", store, "--out", tmp_path / "exp")
    assert exp.returncode == 0
    files = {p.name for p in (tmp_path / "exp" / out["run_id"]).iterdir()}
    assert {"run.json", "contention.parquet", "timeseries.parquet", "orders.parquet"} <= files
    bad = desim("runs", "show", "nope", "--store", store)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_bad_brain_is_one_line(tmp_path):
    for brain in ("nope", "epsilon_greedy:7", "checkpoint:/no/such.pt"):
        r = desim("run", "scenarios/warehouse-tiny.toml", "--brain", brain, "--no-store")
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--brain" in r.stderr, r.stderr


def test_bad_warehouse_section_is_one_line(tmp_path):
    f = tmp_path / "w.toml"
    for body, field in (('size = "huge"', "warehouse.size"), ("robots = 0", "warehouse.robots"),
                        ("robots = 2\nzones = 3", "warehouse"), ('map = "nomap.txt"', "warehouse.map"),
                        ("robots = 2\nrequest_queue = 999", "warehouse.request_queue"), ("speed = 3", "warehouse.speed")):
        f.write_text(f'name = "w"\n[warehouse]\n{body}\n')
        r = desim("validate", f)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and field in r.stderr, (body, r.stderr)
