"""Registries: where the wiring layer finds scenario sections, models and brains.

The kernel keeps the registries and knows nothing of what fills them. The
packages above it register their parts when their plugin is loaded:

- ``sections``: a scenario's top-level tables (``[links]``, ``[warehouse]``,
  ``[train]`` ...), each a pydantic model owned by the package that reads it;
- ``models``: domain models (the warehouse), each selected by its section,
  with its checks and its builder (:class:`ModelSpec`);
- ``policies``: brains (``greedy``, ``checkpoint`` ...) and learners
  (``mappo`` ...), one registry for both (:class:`PolicyEntry`).

Plugins are callables named by the ``desim.plugins`` entry-point group
(desim's own network, warehouse and policies are three of them, declared in
``pyproject.toml``), or modules named in ``DESIM_PLUGINS`` (comma-separated)
or by ``load_plugin``. A plugin is loaded once; each registry loads the
plugins on first use, so importing the kernel stays cheap.
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")

ENTRY_POINT_GROUP = "desim.plugins"
_loaded: set[str] = set()
_loading = False


class UnknownName(ValueError):
    """A name no plugin registered; ``str()`` is one line listing the known names."""


class PluginError(ImportError):
    """A plugin that cannot be imported or registered; ``str()`` is one line naming the module, where it
    was looked for and how it was named (``DESIM_PLUGINS`` or an entry point)."""


def _cause(e: BaseException) -> str:
    """An exception as one short phrase, with the plugin's own file and line when it raised there."""
    where = ""
    tb = e.__traceback__
    while tb is not None:  # the innermost frame: where the plugin's code failed
        where = f" at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    if isinstance(e, SyntaxError) and e.filename:
        where = f" at {e.filename}:{e.lineno}"
    text = " ".join(str(e.msg if isinstance(e, SyntaxError) else e).split())
    return f"{type(e).__name__}: {text}{where}"


def load_plugins() -> None:
    """Load every plugin named by an entry point or ``DESIM_PLUGINS`` (each once)."""
    global _loading
    if _loading:
        return
    _loading = True
    try:
        seen: set[str] = set()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in seen:  # the same distribution seen twice on sys.path
                continue
            seen.add(ep.name)
            key = f"ep:{ep.value}"
            if key not in _loaded:
                try:
                    ep.load()()
                except Exception as e:
                    raise PluginError(f"plugin {ep.name!r} (entry point {ep.value} in group {ENTRY_POINT_GROUP}) "
                                      f"failed to load: {_cause(e)}") from None
                _loaded.add(key)
        for name in filter(None, (m.strip() for m in os.environ.get("DESIM_PLUGINS", "").split(","))):
            load_plugin(name, via="DESIM_PLUGINS")
    finally:
        _loading = False


def load_plugin(module: str, via: str = "load_plugin") -> None:
    """Import ``module`` (from the current folder too, as ``python -m`` would) and call its ``register()``
    if it has one; a module may also register at import time. :class:`PluginError` (one line) if it cannot
    be imported or its ``register()`` fails."""
    key = f"module:{module}"
    if key in _loaded:
        return
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.split(".")[0] != e.name.split(".")[0]:  # the plugin itself imports a missing module
            raise PluginError(f"{via}: plugin module {module!r} could not be imported: {_cause(e)}") from None
        raise PluginError(f"{via}: no plugin module {module!r} in the current folder ({os.getcwd()}) or on "
                          f"sys.path; run from the plugin's folder, add it to PYTHONPATH, or fix {via}") from None
    except Exception as e:
        raise PluginError(f"{via}: plugin module {module!r} failed to import: {_cause(e)}") from None
    reg = getattr(mod, "register", None)
    if callable(reg):
        try:
            reg()
        except Exception as e:
            raise PluginError(f"{via}: plugin module {module!r}: register() failed: {_cause(e)}") from None
    _loaded.add(key)


class Registry(Generic[T]):
    """Names to registered objects of one kind (``what`` names the kind in errors)."""

    def __init__(self, what: str):
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T) -> T:
        """Register ``obj`` as ``name``; registering the same name twice is an error unless it is the same object."""
        old = self._items.get(name)
        if old is not None and old is not obj and old != obj:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._items[name] = obj
        return obj

    def get(self, name: str) -> T:
        """The object registered as ``name``; :class:`UnknownName` (one line) if none is."""
        load_plugins()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none registered"
            raise UnknownName(f"unknown {self.what} {name!r} (expected one of {known})") from None

    def names(self) -> list[str]:
        load_plugins()
        return list(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        load_plugins()
        return iter(list(self._items.items()))

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._items

    def unregister(self, name: str) -> None:
        """Forget ``name`` (tests and tutorials that register a throwaway part)."""
        self._items.pop(name, None)


@dataclass(frozen=True)
class SectionSpec:
    """A top-level scenario table: its pydantic model, its default and its owner.

    ``many``: the table is an array (``[[traffic]]``), validated as a list of
    ``model``; ``default``: the value when the file leaves the table out
    (``None``: the section is optional and absent); ``requires``: the section
    this one needs (the wiring refuses a file that has this one without it)."""

    model: type
    default: Any = None
    many: bool = False
    owner: str = ""
    description: str = ""
    requires: str = ""  # a section this one means nothing without (e.g. "warehouse"): refused when that is absent


@dataclass(frozen=True)
class ModelSpec:
    """A domain model, chosen by a scenario that has its section.

    - ``topology(scenario, file)``: the network graph the model needs (its agents
      as nodes), or ``None`` to use the scenario's ``[topology]``;
    - ``check(scenario, graph, file)``: checks that need more than the section
      alone; returns what ``build`` needs (the warehouse: its layout), built once;
      raises ``desim.scenario.ScenarioError``;
    - ``build(sim, network, scenario, prepared, brain)``: the model, wired into a
      fresh simulation. It must offer ``finish()``, ``summary() -> dict`` and
      ``tables() -> {table: columns}``;
    - ``brain_field``: the section's field naming its agents' brain (``None``: no brain);
    - ``rate(scenario, prepared)``: about how many events the model makes per simulated
      second (an upper estimate), so the wiring layer can refuse a run it could not finish;
      without one, the wiring layer measures it on a short trial run (``docs/models.md``);
    - ``figures``: the top-level keys ``summary()`` returns (a tuple, or
      ``figures(scenario, prepared)``), so a clash with the runner's figures is refused
      before the run; the run's summary must then hold no other key;
    - ``tables``: the table names ``tables()`` returns (a tuple or a callable, as ``figures``),
      so a clash with the network's tables is refused before the run;
    - ``refines``: runner figures the model may replace with its own (the warehouse adds its
      robots' retries to ``retries``); any other clash is refused;
    - ``printout(summary) -> [(label, text), ...]``: the rows ``desim run`` prints after the
      runner's (default: every model figure, flattened);
    - ``headline(summary) -> str``: a few words for ``desim runs list`` (e.g. "957 deliveries"),
      stored with the run so readers need no plugin.
    """

    section: str
    build: Callable[..., Any]
    check: Callable[..., Any] | None = None
    topology: Callable[..., Any] | None = None
    brain_field: str | None = None
    rate: Callable[..., float] | None = None
    description: str = ""
    figures: tuple[str, ...] | Callable[..., Any] | None = None
    tables: tuple[str, ...] | Callable[..., Any] | None = None
    refines: tuple[str, ...] = ()
    printout: Callable[[dict], list] | None = None
    headline: Callable[[dict], str] | None = None


@dataclass(frozen=True)
class PolicyEntry:
    """A brain kind or a learner, by name.

    ``kind == "brain"``: ``make(arg, mode, rng)`` builds the brain for a spec
    ``name[:arg][#mode]``; ``check(arg, mode)``, when given, validates the spec
    cheaply (ValueError, one line) without building.
    ``kind == "learner"``: ``target`` is ``"module:Class"``, imported on use.
    """

    kind: str
    make: Callable[..., Any] | None = None
    check: Callable[..., None] | None = None
    target: str = ""
    description: str = ""
    needs_arg: bool = False
    extra: dict = field(default_factory=dict)

    def load_target(self) -> Any:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


sections: Registry[SectionSpec] = Registry("scenario section")
models: Registry[ModelSpec] = Registry("model")
policies: Registry[PolicyEntry] = Registry("policy")
