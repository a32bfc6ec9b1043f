"""Scenario files as the wiring layer reads them: parsed, validated once, checked against the topology once."""
from __future__ import annotations

from pathlib import Path

from desim.app.runner import prepare
from desim.scenario import MAX_TEXT, ScenarioBase, ScenarioError, parse, scenario_type

__all__ = ["ScenarioError", "load", "parse", "scenario_type"]


def load(path: str | Path) -> ScenarioBase:
    """Read, parse and validate a scenario file, and check its wiring (graph, flows, model) once.

    The checked plan stays with the returned object, so running it does not check again."""
    p = Path(path)
    if not p.is_file():
        raise ScenarioError(str(path), "", "no such file")
    try:
        if p.stat().st_size > 4 * MAX_TEXT:  # before reading it: a scenario is a small text file
            raise ScenarioError(str(path), "", f"{p.stat().st_size:,} bytes; a scenario file holds at most {MAX_TEXT:,} characters")
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(str(path), "", f"cannot read: {e}") from None
    sc = parse(text, str(path), p.parent)
    prepare(sc, str(path))
    return sc
