"""Scenario files as the wiring layer reads them: parsed, validated once, checked against the topology once."""
from __future__ import annotations

import tomllib
from pathlib import Path

from desim.app.runner import prepare
from desim.scenario import MAX_TEXT, ScenarioBase, ScenarioError, parse, scenario_type, validate

__all__ = ["ScenarioError", "load", "load_data", "parse", "read_text", "scenario_type"]


def read_text(path: str | Path) -> str:
    """A scenario file's text (ScenarioError, one line: missing, too large, unreadable)."""
    p = Path(path)
    if not p.is_file():
        raise ScenarioError(str(path), "", "no such file")
    try:
        if p.stat().st_size > 4 * MAX_TEXT:  # before reading it: a scenario is a small text file
            raise ScenarioError(str(path), "", f"{p.stat().st_size:,} bytes; a scenario file holds at most {MAX_TEXT:,} characters")
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(str(path), "", f"cannot read: {e}") from None


def load(path: str | Path) -> ScenarioBase:
    """Read, parse and validate a scenario file, and check its wiring (graph, flows, model) once.

    The checked plan stays with the returned object, so running it does not check again."""
    sc = parse(read_text(path), str(path), Path(path).parent)
    prepare(sc, str(path))
    return sc


def load_data(path: str | Path) -> tuple[dict, str, ScenarioBase]:
    """A scenario file as data to vary (a study's arms, a suite's cases): ``(data, text, scenario)``, the
    scenario validated and its wiring checked; ScenarioError (one line) otherwise."""
    text = read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(str(path), "", f"malformed TOML: {e}") from None
    sc = validate(data, str(path), Path(path).parent)
    prepare(sc, str(path))
    return data, text, sc
