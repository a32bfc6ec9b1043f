"""A fuzzer over every shipped scenario: bad input is one line and exit 2, good input runs and balances.

Hypothesis mutates the files in ``scenarios/`` (a dropped key, a wrong type, an
out-of-range or non-finite number, an unknown key, junk text, deep nesting, several
at once, or plausible values: every number scaled by 0.5..2) and drives the real CLI in this process (``desim.app.cli.main``):

- ``desim validate`` exits 0, or exits 2 with one line on stderr and nothing on stdout;
  any other outcome (a traceback, another exit code, a second line) fails the case;
- every scenario ``validate`` accepts is run (``desim run --no-store --json``, shortened
  to a few simulated seconds, under a small event budget) and must finish with exit 0
  and messages and orders conserved, or be refused by the budget with one line;
- no case may take longer than ``CASE_LIMIT_S`` seconds (a hang is a failure).

At least 300 cases run in the default suite (``DESIM_FUZZ_CASES`` sets more); the
tally (cases, outcomes, time) is printed with ``-s`` and checked at the end.
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings, strategies as st
from pydantic import BaseModel

from cli_support import call
from desim.registry import sections

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "scenarios").glob("*.toml"))
CASES = int(os.environ.get("DESIM_FUZZ_CASES", "320"))
CASE_LIMIT_S = 60  # generous for a loaded CI machine; a case usually takes well under a second
RUN_UNTIL = 15.0  # simulated seconds an accepted scenario is run for
BUDGET = "400000"  # events: an accepted run must finish in seconds

ABSURD = [0, -1, -1e-9, 1e-300, 1e308, -1e308, 2**63, 2**70, -(2**63), math.inf, -math.inf, math.nan, 10**6, 0.5]
WRONG = ["", "x" * 300, "[bold]red[/bold] :smile:", True, [], [1, "a"], {"k": 1}, {"": {}}, 1.5, "1e400"]


class CaseTimeout(Exception):
    pass


def _alarm(signum, frame):  # pragma: no cover - only on a hang
    raise CaseTimeout(f"case took longer than {CASE_LIMIT_S} s")


# -- mutations ------------------------------------------------------------------------
def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a parsed TOML document (tables, arrays of tables, leaves)."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append(prefix + (k,))
            out += paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            if isinstance(v, (dict, list)):
                out += paths(v, prefix + (i,))
    return out


def get(doc: Any, path: tuple) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def set_(doc: Any, path: tuple, value: Any) -> None:
    get(doc, path[:-1])[path[-1]] = value


def drop(doc: Any, path: tuple) -> None:
    del get(doc, path[:-1])[path[-1]]


def nested(depth: int, leaf: Any = 1) -> Any:
    v = leaf
    for i in range(depth):
        v = [v] if i % 2 else {"k": v}
    return v


@st.composite
def mutated(draw) -> tuple[str, str | bytes]:
    """(kind, file content): one shipped scenario with one or more mutations."""
    src = draw(st.sampled_from(SHIPPED))
    text = src.read_text()
    kind = draw(st.sampled_from(["drop", "wrong_type", "absurd", "unknown_key", "junk", "deep", "several", "bytes",
                                 "perturb", "perturb"]))
    if kind == "junk":
        how = draw(st.sampled_from(["insert", "truncate", "replace"]))
        if how == "truncate":
            return kind, text[: draw(st.integers(0, len(text)))]
        if how == "replace":
            return kind, draw(st.text(max_size=400))
        at = draw(st.integers(0, len(text)))
        return kind, text[:at] + draw(st.text(min_size=1, max_size=40)) + text[at:]
    if kind == "bytes":
        return kind, draw(st.binary(max_size=300)) + text.encode()[: draw(st.integers(0, 200))]
    doc = tomllib.loads(text)
    if kind == "deep":
        depth = draw(st.sampled_from([40, 200, 2000]))
        if depth > 100 or draw(st.booleans()):  # deeper than a TOML writer recurses: written by hand
            return kind, text + "\nzzz = " + "[" * depth + "1" + "]" * depth + "\n"
        doc[draw(st.sampled_from(sorted(doc)))] = nested(depth)
        return kind, tomli_w.dumps(doc)
    if kind == "perturb":  # plausible values (each number scaled by 0.5..2): mostly accepted, so they must run
        for path in paths(doc):
            v = get(doc, path)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and draw(st.booleans()):
                f = draw(st.floats(0.5, 2.0))
                set_(doc, path, max(1, round(v * f)) if isinstance(v, int) else v * f)
        return kind, tomli_w.dumps(doc)
    for _ in range(draw(st.integers(2, 4)) if kind == "several" else 1):
        this = draw(st.sampled_from(["drop", "wrong_type", "absurd", "unknown_key"])) if kind == "several" else kind
        ps = paths(doc)
        if not ps:
            break
        path = draw(st.sampled_from(ps))
        if this == "drop":
            drop(doc, path)
        elif this == "wrong_type":
            set_(doc, path, draw(st.sampled_from(WRONG)))
        elif this == "absurd":
            leaves = [p for p in ps if isinstance(get(doc, p), (int, float)) and not isinstance(get(doc, p), bool)]
            path = draw(st.sampled_from(leaves)) if leaves else path
            set_(doc, path, draw(st.sampled_from(ABSURD)))
        else:
            tables = [()] + [p for p in ps if isinstance(get(doc, p), dict)]
            table = draw(st.sampled_from(tables))
            get(doc, table)[draw(st.sampled_from(["bogus", "Seed", "rate ", "ünïcode", "until_"]))] = 1
    return kind, tomli_w.dumps(doc)


def test_every_numeric_field_of_every_section_has_a_range():
    """The class of 'a number, but absurd': each int/float field states both of its bounds."""
    from desim.scenario import ScenarioBase

    missing = []

    def visit(model: type[BaseModel], where: str) -> None:
        for name, f in model.model_fields.items():
            ann = str(f.annotation)
            for sub in _submodels(f.annotation):
                visit(sub, f"{where}.{name}")
            if not any(t in ann for t in ("int", "float")) or "str" in ann or "dict" in ann:
                continue
            lows = [m for m in f.metadata if any(getattr(m, a, None) is not None for a in ("ge", "gt"))]
            highs = [m for m in f.metadata if any(getattr(m, a, None) is not None for a in ("le", "lt"))]
            if not (lows and highs):
                missing.append(f"{where}.{name}")

    visit(ScenarioBase, "scenario")
    for name, spec in sections.items():
        visit(spec.model, name)
    assert not missing, f"numeric fields without a range: {missing}"


def _submodels(ann: Any) -> list[type[BaseModel]]:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    return [m for a in getattr(ann, "__args__", ()) for m in _submodels(a)]


def test_fuzzed_scenarios_are_one_line_or_run_and_balance(tmp_path, monkeypatch):
    monkeypatch.setenv("DESIM_EVENT_BUDGET", BUDGET)
    (tmp_path / "maps").symlink_to(ROOT / "scenarios" / "maps")
    tally: Counter = Counter()
    times: list[float] = []
    failures: list[str] = []
    counter = iter(range(10**9))

    @settings(max_examples=CASES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(mutated())
    def case(mc):
        kind, content = mc
        f = tmp_path / f"case-{next(counter)}.toml"
        (f.write_bytes if isinstance(content, bytes) else f.write_text)(content)
        t0 = time.perf_counter()
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(CASE_LIMIT_S)
        try:
            code, out, err = call("validate", str(f))
            outcome = f"validate exit {code}"
            assert code in (0, 2), f"{kind}: exit {code}: {err[-2000:]}"
            if code == 2:
                assert out == "" and len(err.strip().splitlines()) == 1 and err.startswith("desim: error: "), (kind, err)
            else:
                until = tomllib.loads(f.read_text()).get("until", 60.0)
                shorter = ["--until", str(RUN_UNTIL)] if until > RUN_UNTIL else []
                code, out, err = call("run", str(f), "--no-store", "--json", *shorter)
                outcome = f"run exit {code}"
                if code == 2:  # the event budget may refuse it: one line, like any bad input
                    assert out == "" and len(err.strip().splitlines()) == 1 and "events" in err, (kind, err)
                else:
                    assert code == 0, f"{kind}: accepted by validate, run exit {code}: {err[-2000:]}"
                    s = json.loads(out)
                    m = s["messages"]
                    assert s["conservation_ok"] and m["sent"] + m["duplicated"] == m["delivered"] + sum(m["dropped"].values()) + m["in_flight"], s
                    if "orders" in s:
                        o = s["orders"]
                        assert o["created"] == o["completed"] + sum(o["failed"].values()) + o["pending"], o
        except CaseTimeout as e:
            failures.append(f"{kind}: {e}")
            raise AssertionError(f"{kind}: hang: {e}")
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
        tally[(kind, outcome)] += 1
        times.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    case()
    total = sum(tally.values())
    by_outcome = Counter()
    for (kind, outcome), n in tally.items():
        by_outcome[outcome] += n
    print(f"\nfuzz tally: {total} cases in {time.perf_counter() - t0:.0f} s "
          f"(slowest case {max(times):.2f} s); outcomes {dict(sorted(by_outcome.items()))}")
    for (kind, outcome), n in sorted(tally.items()):
        print(f"  {kind:12s} {outcome:16s} {n}")
    assert total >= min(CASES, 300), total
    assert by_outcome["run exit 0"] > 0 and by_outcome["validate exit 2"] > 0, by_outcome
