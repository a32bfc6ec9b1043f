"""One typed scenario: the kernel's fields plus every section a plugin registers.

A scenario file is TOML. Its top-level fields (``name``, ``description``,
``seed``, ``until``) belong to the kernel; every table (``[topology]``,
``[links]``, ``[[faults]]``, ``[warehouse]``, ``[train]`` ...) is a section
registered in :data:`desim.registry.sections` by the package that reads it,
as a pydantic model. :func:`scenario_type` composes them into one frozen
pydantic model, so ``scenario.warehouse`` is a typed ``WarehouseCfg`` and
each section is validated once, when the file is parsed.

A bad file never raises a traceback at the user: :func:`parse` raises
:class:`ScenarioError`, whose text is ``FILE: FIELD: what is wrong``.
Relative paths inside sections are resolved against the file's folder
through the validation context (a :data:`PathField` resolves against
``info.context["base_dir"]``).
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Optional

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, create_model,
                      field_validator)

from desim import registry


class ScenarioError(ValueError):
    """A scenario that cannot be run; ``str()`` is one line naming file, field and problem."""

    def __init__(self, file: str, field: str, problem: str):
        problem = " ".join(str(problem).split())  # one line, whatever the cause's text held
        self.file, self.field, self.problem = file, field, problem
        super().__init__(f"{file}: {field}: {problem}" if field else f"{file}: {problem}")


class NotANode(ValueError):
    """An agent built under a name that is not a node of the run's topology (``str()``: one line, naming
    the agent and the nodes it could be). The wiring layer turns it into a :class:`ScenarioError`."""


class FieldError(ValueError):
    """Raised by a section's validator about one of its nested fields: ``path`` (e.g. ``("mappo", "lr")``)
    is added to the section's place in the file, so the user reads ``train.mappo.lr: problem``."""

    def __init__(self, path: tuple, problem: str):
        self.path, self.problem = tuple(path), problem
        super().__init__(problem)


class Section(BaseModel):
    """Base of every scenario section: unknown fields are errors, values are frozen, numbers are finite.

    Every numeric field of a section states its range (``Field(ge=..., le=...)``): a value that is a
    number but absurd (an infinite run, a rate that overflows) is rejected when the file is read, not
    discovered when the run never ends. ``tests/test_fuzz_scenarios.py`` checks that every field has one."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


def resolve_path(value: str | None, info: ValidationInfo) -> str | None:
    """A section's file path, relative to the scenario file's folder (a field validator's helper)."""
    base = (info.context or {}).get("base_dir")
    if value is None or base is None or Path(value).is_absolute():
        return value
    return str(Path(base) / value)


PathField = Annotated[Optional[str], AfterValidator(resolve_path)]
"""A section field holding a file path, resolved against the scenario file's folder."""


def field_path(loc: tuple) -> str:
    """``("links", "override", 0, "between")`` -> ``links.override[0].between``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def error_of(e: ValidationError, file: str, prefix: tuple = ()) -> ScenarioError:
    """The first problem of a pydantic error as one ScenarioError line (``and N more`` when there are more)."""
    err = e.errors()[0]
    msg = err["msg"].removeprefix("Value error, ")
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, FieldError):
        err = {**err, "loc": tuple(err["loc"]) + cause.path}
        msg = cause.problem
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
        if not prefix and len(err["loc"]) == 1 and isinstance(err.get("input"), (dict, list)):
            import difflib

            names = sorted(n for n, _ in registry.sections.items())
            close = difflib.get_close_matches(str(err["loc"][0]), names, n=1)
            hint = f"did you mean [{close[0]}]? " if close else ""
            msg = (f"unknown section: no loaded plugin defines [{err['loc'][0]}]; {hint}known: {', '.join(names)}; a "
                   f"model's plugin is loaded by DESIM_PLUGINS=MODULE or an entry point in group {registry.ENTRY_POINT_GROUP}")
    if err["type"] == "missing":
        msg = "required field is missing"
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return ScenarioError(file, field_path(prefix + tuple(err["loc"])), msg + more)


MAX_SEED = 2**63 - 1
MAX_UNTIL = 10_000_000.0  # simulated seconds (about 116 days); what a run can afford is checked against its event budget
MAX_TEXT = 1_000_000  # characters in a scenario file
MAX_DEPTH = 32  # nesting of tables and arrays in a scenario file


class ScenarioBase(Section):
    """The kernel's own fields; sections are added by :func:`scenario_type`."""

    name: str
    description: str = ""
    seed: int = Field(0, ge=0, le=MAX_SEED, description="the run's random seed (every stream derives from it)")
    until: float = Field(60.0, gt=0, le=MAX_UNTIL, description="simulated seconds")
    _plan: Any = PrivateAttr(None)  # the wiring layer's checked plan for this very object (desim.app.runner.prepare)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v


_types: dict[tuple, type[ScenarioBase]] = {}


def scenario_type() -> type[ScenarioBase]:
    """The Scenario model: :class:`ScenarioBase` plus every registered section (built once per set of sections)."""
    specs = sorted(registry.sections.items())
    key = tuple((name, id(spec)) for name, spec in specs)
    if key not in _types:
        fields: dict[str, Any] = {}
        for name, spec in specs:
            ann = list[spec.model] if spec.many else (spec.model if spec.default is not None else Optional[spec.model])
            default = spec.default if spec.default is not None else ([] if spec.many else None)
            fields[name] = (ann, Field(default, description=spec.description or f"section owned by {spec.owner}"))
        _types[key] = create_model("Scenario", __base__=ScenarioBase, __module__=__name__, **fields)
    return _types[key]


def __getattr__(name: str):
    if name == "Scenario":  # the composed model, by name (for isinstance checks and pickling)
        return scenario_type()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _depth(value: Any, limit: int, level: int = 0) -> int:
    """How deep tables and arrays nest in ``value`` (stops counting past ``limit``)."""
    if level > limit or not isinstance(value, (dict, list)):
        return level
    items = value.values() if isinstance(value, dict) else value
    return max((_depth(v, limit, level + 1) for v in items), default=level + 1)


def validate(data: dict, file: str = "<scenario>", base_dir: Path | None = None) -> ScenarioBase:
    """A Scenario from a dict (a parsed TOML file); ScenarioError on any problem."""
    if not isinstance(data, dict):
        raise ScenarioError(file, "", f"a scenario is a table of fields, got {type(data).__name__}")
    if _depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise ScenarioError(file, "", f"tables and arrays nest deeper than {MAX_DEPTH} levels")
    try:
        return scenario_type().model_validate(data, context={"base_dir": base_dir})
    except ValidationError as e:
        raise error_of(e, file) from None
    except RecursionError:
        raise ScenarioError(file, "", "tables and arrays nest too deep") from None


def parse(text: str, file: str = "<scenario>", base_dir: Path | None = None) -> ScenarioBase:
    """Parse and validate scenario TOML text; raise ScenarioError on any problem."""
    if len(text) > MAX_TEXT:
        raise ScenarioError(file, "", f"{len(text):,} characters; a scenario file holds at most {MAX_TEXT:,}")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(file, "", f"malformed TOML: {e}") from None  # ScenarioError makes it one line
    except RecursionError:
        raise ScenarioError(file, "", "malformed TOML: tables and arrays nest too deep") from None
    return validate(data, file, base_dir)



def to_data(sc: BaseModel) -> dict:
    """A scenario (or section) as the plain TOML-ready dict it was read from (defaults left out)."""
    return sc.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
