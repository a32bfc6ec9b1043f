"""Scenario files as the wiring layer reads them: parsed, validated and checked against the topology."""
from __future__ import annotations

from pathlib import Path

from desim.scenario import Scenario, ScenarioError, parse

__all__ = ["Scenario", "ScenarioError", "load", "parse"]


def load(path: str | Path) -> Scenario:
    """Read, parse and validate a scenario file (including its network wiring)."""
    p = Path(path)
    if not p.is_file():
        raise ScenarioError(str(path), "", "no such file")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(str(path), "", f"cannot read: {e}") from None
    sc = parse(text, str(path), p.parent)
    from desim.app.runner import check_wiring

    check_wiring(sc, str(path))
    return sc
