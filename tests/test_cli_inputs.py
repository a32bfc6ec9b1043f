"""Every bad input to the CLI is one clear line and exit 2, by class; `runs list/show/export` read well.

One test per class of input that used to escape (issue 11): store paths that are not
stores, absurd numbers, deep TOML, exports, enumerated flags, literal error text, a taken
port. Checkpoint files that are not checkpoints: tests/test_policy_inputs.py; the
scenario fuzzer: tests/test_fuzz_scenarios.py.
"""
from __future__ import annotations

import enum
import json
import os
import re
import shutil
import socket
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cli_support import call, one_line_error
from desim.app import cli

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "scenarios" / "warehouse-tiny.toml"
NET = ROOT / "scenarios" / "network-partition.toml"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A store holding several runs: three warehouse runs and a network run."""
    p = tmp_path_factory.mktemp("store") / "desim.duckdb"
    for seed in (1, 2, 3):
        code, out, err = call("run", TINY, "--seed", seed, "--until", 30, "--store", p, "--json")
        assert code == 0, err
    code, out, err = call("run", NET, "--until", 10, "--store", p, "--json")
    assert code == 0, err
    return p


def _not_stores(tmp_path: Path, real: Path) -> dict[str, Path]:
    text = tmp_path / "notes.txt"
    text.write_text("these are my notes, not a store\n")
    noise = tmp_path / "noise.bin"
    noise.write_bytes(os.urandom(20_000))
    truncated = tmp_path / "truncated.duckdb"
    truncated.write_bytes(real.read_bytes()[:3000])
    empty = tmp_path / "empty.duckdb"
    empty.write_bytes(b"")
    folder = tmp_path / "folder.duckdb"
    folder.mkdir()
    return {"text file": text, "random bytes": noise, "truncated store": truncated, "empty file": empty, "directory": folder}


def _state(p: Path) -> tuple:
    if p.is_dir():
        return ("dir", sorted(x.name for x in p.iterdir()))
    return (p.read_bytes(), p.stat().st_mtime_ns)


# -- store paths that are not stores ------------------------------------------------------
@pytest.mark.parametrize("kind", ["text file", "random bytes", "truncated store", "empty file", "directory"])
def test_a_path_that_is_not_a_store_is_one_line_and_nothing_is_written(tmp_path, store, kind):
    bad = _not_stores(tmp_path, store)[kind]
    before, siblings = _state(bad), sorted(os.listdir(tmp_path))
    for args in (["run", TINY, "--until", 5, "--store", bad], ["runs", "list", "--store", bad],
                 ["runs", "show", "latest", "--store", bad], ["runs", "export", "latest", "--store", bad, "--out", tmp_path / "x"],
                 ["train", ROOT / "scenarios" / "train-tiny.toml", "--algo", "mappo", "--steps", 8, "--store", bad]):
        line = one_line_error(*call(*args))
        assert str(bad) in line, line
        assert _state(bad) == before, f"{args[0]}: the file changed"
        assert sorted(os.listdir(tmp_path)) == siblings, f"{args[0]}: something was written beside it"


# -- absurd numbers and deep TOML (the fuzzer covers them at random; these are the named cases) --
@pytest.mark.parametrize("line, field", [
    ("until = inf", "until"), ("until = nan", "until"), ("until = 1e300", "until"), ("until = 9e6", "until"),
    ("seed = -1", "seed"), ("seed = 99999999999999999999", "seed"),
])
def test_absurd_kernel_numbers_are_refused_by_validate(tmp_path, line, field):
    text = re.sub(r"(?m)^(until|seed) = .*$", "", NET.read_text())
    f = tmp_path / "s.toml"
    f.write_text(line + "\n" + text)
    msg = one_line_error(*call("validate", f))
    assert f": {field}:" in msg, msg


@pytest.mark.parametrize("old, new, field", [
    ("rate = 5.0", "rate = 1e300", "traffic[0].rate"),
    ("rate = 5.0", "rate = 1e5", "until"),  # in range, but the run would not finish: the event budget
    ("extra_delay = 0.05", "extra_delay = inf", "faults[1].extra_delay"),
    ("robots_per_zone = 4", "robots_per_zone = 10000000", "topology.robots_per_zone"),
])
def test_absurd_section_numbers_are_refused_by_validate(tmp_path, old, new, field):
    f = tmp_path / "s.toml"
    f.write_text(NET.read_text().replace(old, new, 1))
    msg = one_line_error(*call("validate", f))
    assert f": {field}:" in msg, msg


def test_run_until_beyond_the_budget_is_refused_before_anything_runs(tmp_path):
    msg = one_line_error(*call("run", TINY, "--until", 9e9, "--store", tmp_path / "s.duckdb"))
    assert "--until" in msg and "events" in msg
    assert not (tmp_path / "s.duckdb").exists() or call("runs", "list", "--store", tmp_path / "s.duckdb")[1].startswith("no runs")


@pytest.mark.parametrize("depth", [60, 5000])
def test_deep_toml_is_one_line(tmp_path, depth):
    f = tmp_path / "deep.toml"
    f.write_text('name = "x"\nvalue = ' + "[" * depth + "1" + "]" * depth + "\n")
    assert "nest" in one_line_error(*call("validate", f))


# -- enumerated flags ------------------------------------------------------------------------
def _choice_options():
    """Every option of every command whose values are a fixed set (a Choice), found in the CLI itself."""
    import typer.main

    root = typer.main.get_command(cli.app)
    out = []

    def walk(cmd, path):
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, path + [name])
        for p in getattr(cmd, "params", []):
            ann = getattr(getattr(p, "type_descriptor", None), "annotation", None)
            if isinstance(ann, type) and issubclass(ann, enum.Enum) and p.opts and p.opts[0].startswith("--"):
                out.append((path, p.opts[0], [m.value for m in ann]))

    walk(root, [])
    return out


def test_every_enumerated_flag_refuses_a_value_outside_its_set(tmp_path, store):
    options = _choice_options()
    assert {(" ".join(path), opt) for path, opt, _ in options} >= {("runs list", "--kind"), ("runs export", "--format")}
    needs = {"run": [TINY], "validate": [TINY], "train": [TINY, "--algo", "mappo", "--steps", 1], "runs show": ["latest"],
             "runs export": ["latest"]}
    for path, opt, choices in options:
        args = [*path, *needs.get(" ".join(path), []), opt, "bogus"]
        if path[0] == "runs":
            args += ["--store", store]
        line = one_line_error(*call(*args))
        assert "bogus" in line and all(c in line for c in map(str, choices)), line


@pytest.mark.parametrize("args, what", [
    (["train", TINY, "--algo", "dqn", "--steps", 8], "--algo"),
    (["train", TINY, "--algo", "mappo", "--steps", 8, "--device", "gpu7"], "--device"),
    (["run", TINY, "--brain", "telepathy"], "--brain"),
])
def test_free_form_flags_with_a_fixed_vocabulary_are_checked(args, what):
    assert what in one_line_error(*call(*args))


# -- literal text ------------------------------------------------------------------------------
def _number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


HOSTILE = st.text(alphabet=st.sampled_from(list("[]/:_abcsmile0123 {}\\")), min_size=1, max_size=30).filter(
    lambda v: not _number(v) and v.strip() == v and v)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(value=HOSTILE)
def test_user_values_are_printed_literally(value):
    """rich markup, emoji codes and braces in a user's value come back exactly as typed."""
    code, out, err = call("run", TINY, "--brain", f"epsilon_greedy:{value}", "--no-store")
    line = one_line_error(code, out, err)
    assert f"epsilon_greedy:{value}" in line or repr(f"epsilon_greedy:{value}")[1:-1] in line, (value, line)


def test_a_scenario_named_in_markup_is_shown_as_named(tmp_path):
    name = "[bold red]my :smile: run[/] {x}"
    f = tmp_path / "s.toml"
    f.write_text(TINY.read_text().replace('name = "warehouse-tiny"', f"name = {json.dumps(name)}"))
    code, out, err = call("validate", f)
    assert code == 0 and f"({name})" in out, (out, err)
    code, out, err = call("run", f, "--until", 5, "--no-store")
    assert code == 0 and name in out, out
    bad = tmp_path / "[bold]my :smile: store.duckdb"
    bad.write_text("not a store")
    assert str(bad) in one_line_error(*call("run", f, "--until", 5, "--store", bad))


# -- exports ------------------------------------------------------------------------------------
def test_export_gives_each_run_its_own_folder_in_parquet_or_csv(tmp_path, store):
    ids = [r["run_id"] for r in json.loads(call("runs", "list", "--store", store, "--json")[1])]
    out = tmp_path / "export"
    written = {}
    for rid, fmt in zip(ids[:2], ("parquet", "csv")):
        code, o, err = call("runs", "export", rid, "--out", out, "--format", fmt, "--store", store)
        assert code == 0, err
        written[rid] = [Path(line) for line in o.split()]
        assert all(p.parent == out / rid for p in written[rid]) and (out / rid / "run.json").exists()
    for rid, paths in written.items():  # the second export did not touch the first
        assert all(p.exists() for p in paths)
    csvs = [p for p in written[ids[1]] if p.suffix == ".csv"]
    assert csvs and duckdb.sql(f"select count(*) from read_csv_auto('{csvs[0]}')").fetchall()[0][0] > 0
    # again into the same folder: refused, unless asked to overwrite
    again = one_line_error(*call("runs", "export", ids[0], "--out", out, "--store", store))
    assert str(out / ids[0]) in again
    assert call("runs", "export", ids[0], "--out", out, "--store", store, "--overwrite")[0] == 0


def test_export_into_a_file_is_one_line(tmp_path, store):
    f = tmp_path / "taken.txt"
    f.write_text("mine")
    line = one_line_error(*call("runs", "export", "latest", "--out", f, "--store", store))
    assert str(f) in line and f.read_text() == "mine"


# -- run ids, list and show ---------------------------------------------------------------------
def test_runs_list_keeps_whole_ids_when_piped(store):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "desim.app.cli", "runs", "list", "--store", str(store)],
                       capture_output=True, text=True, env=dict(os.environ, COLUMNS="80"))
    assert r.returncode == 0, r.stderr
    ids = [row["run_id"] for row in json.loads(call("runs", "list", "--store", store, "--json")[1])]
    assert len(ids) >= 4 and all(i in r.stdout for i in ids), r.stdout


def test_runs_show_is_readable_and_latest_names_the_newest(store):
    rows = json.loads(call("runs", "list", "--store", store, "--json")[1])
    code, out, err = call("runs", "show", "latest", "--store", store)
    assert code == 0, err
    assert rows[0]["run_id"] in out
    assert not re.search(r"\d\.\d{6,}", out), out  # no unrounded floats
    assert "{" not in out and '"' not in out  # no raw JSON
    labels = [ln.split("│")[1].strip() for ln in out.splitlines() if ln.count("│") >= 3 and ln.split("│")[1].strip()]
    assert len(labels) == len(set(labels)), f"fields shown twice: {labels}"
    code, out, err = call("runs", "show", "latest", "--store", store, "--json")
    assert code == 0 and json.loads(out)["run_id"] == rows[0]["run_id"]


def test_an_ambiguous_run_id_names_the_choices(store):
    line = one_line_error(*call("runs", "show", "r-", "--store", store))
    assert "latest" in line and "match" in line


def test_runs_list_kind_filters_and_empty_kind_says_so(store):
    code, out, err = call("runs", "list", "--store", store, "--kind", "sweep")
    assert code == 0 and "no sweep runs" in out


# -- the dashboard's port -------------------------------------------------------------------------
def test_dash_on_a_taken_port_is_one_line(store):
    with socket.socket() as s:
        s.bind(("", 0))
        s.listen()
        port = s.getsockname()[1]
        line = one_line_error(*call("dash", "--store", store, "--port", port))
        assert str(port) in line and "in use" in line


def test_dash_on_a_file_that_is_not_a_store_is_one_line(tmp_path):
    f = tmp_path / "x.duckdb"
    f.write_text("not a store")
    assert str(f) in one_line_error(*call("dash", "--store", f, "--port", 1))


# -- the README's examples, as written, on a store that holds several runs ---------------------------
def test_the_readme_examples_run_as_written(tmp_path, monkeypatch):
    """Every `desim` line of the README's "Using it" block, in order, from a folder with the scenarios
    (so the default store runs/desim.duckdb fills up as a user's would). Two lines are adapted: `desim dash`
    serves until stopped (checked to get as far as binding its port), and the training run is shortened."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Using it", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [ln.split("#", 1)[0].strip() for ln in block.splitlines()]
    lines = [ln for ln in lines if ln.startswith("desim ")]
    assert len(lines) >= 10
    (tmp_path / "scenarios").symlink_to(ROOT / "scenarios")
    monkeypatch.chdir(tmp_path)
    import shlex

    for ln in lines:
        args = shlex.split(ln)[1:]
        if args[0] == "dash":
            continue
        if args[0] == "train":
            args[args.index("--steps") + 1] = "64"
        if args[0] == "run" and "--until" not in args:
            args += ["--until", "60"]  # the scenarios run for an hour of simulated time; a minute shows the same
        code, out, err = call(*args)
        assert code == 0, f"{ln}: exit {code}: {err}"
    runs = json.loads(call("runs", "list", "--json")[1])
    assert len(runs) >= 5  # several runs: `latest` and the exports stayed unambiguous
    exported = [p.parent.name for p in (tmp_path / "export").glob("*/run.json")]
    assert len(exported) == 1 and exported[0] in {r["run_id"] for r in runs}, exported


def test_the_cli_kinds_are_the_stores():
    """`--kind` is a Choice built without importing the store (start-up): the same kinds as the store's."""
    from desim.app import cli
    from desim.store import KINDS

    assert tuple(k.value for k in cli.Kind) == KINDS
