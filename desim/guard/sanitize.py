"""Validation and sanitization of a tool's output before an agent sees it.

A payload passes four gates, in order; the first that fails rejects it with a
reason ``"<class>: <detail>"`` (the classes are :data:`REJECT_CLASSES`):

1. **shape** (:func:`plain_copy`): the payload is rebuilt from JSON types only
   (``dict`` with ``str`` keys, ``list``/``tuple``, ``str``, ``int``, ``float``,
   ``bool``, ``None``), checked by exact type, never by calling the object's own
   methods, so a hostile object cannot run code in the guard. Anything else is
   ``wrong_type``; a number that is NaN or infinite is ``not_finite``; one whose
   magnitude exceeds ``Limits.max_abs`` is ``out_of_range``; more than
   ``max_items`` values, deeper than ``max_depth`` or a string longer than
   ``max_string`` is ``too_large``. The agent only ever sees this copy (or the
   schema's frozen model built from it), never the tool's own object.
2. **strings** (:func:`smuggling`): every string (keys too), NFKC-normalized,
   is checked against :data:`SMUGGLING`: phrases that address an agent or a
   model ("ignore previous instructions", role tags such as ``system:``,
   chat-template tokens), shell/SQL/code injection, template markers, and
   control or invisible characters (zero-width, bidi overrides). A match is
   ``smuggling``.
3. **schema** (a :class:`Payload` subclass, pydantic, strict): types,
   required fields, per-field ranges and lengths; pydantic's error becomes
   ``wrong_type`` / ``missing_field`` / ``not_finite`` / ``out_of_range`` /
   ``too_large`` naming the field. Extra fields are dropped.
4. **plausibility** (optional, per tool): a rule on the validated value and the
   caller's context (:func:`near`: within a tolerance of what the caller
   expects, e.g. its belief estimate ± k·σ) gives ``implausible``.

**Byzantine values** (well-formed, plausible, wrong) pass gates 1-3 by
construction: a stock count of 40 when the truth is 12 is a valid integer in
range. Only gate 4 can catch one, and only when it falls outside the rule's
tolerance; a lie inside the tolerance passes, and the guard cannot tell.
``docs/guard.md`` has the table; ``tests/test_guard.py`` checks both sides.
"""
from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

from pydantic import BaseModel, ConfigDict, ValidationError

REJECT_CLASSES = ("wrong_type", "missing_field", "not_finite", "out_of_range", "too_large", "smuggling",
                  "implausible", "invalid")


class Payload(BaseModel):
    """Base of a tool's output schema: strict types, finite numbers, frozen, extra fields dropped.
    Give every number a range (``Field(ge=..., le=...)``) and every string a ``max_length``;
    use tuples, not lists, so the value the agent gets cannot be changed."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False, strict=True)


@dataclass(frozen=True)
class Limits:
    """Size limits checked before the schema (a huge payload is refused before it is parsed)."""

    max_items: int = 10_000  # values in the whole payload
    max_depth: int = 16  # nesting of dicts and lists
    max_string: int = 1_000  # characters per string
    max_abs: float = 1e15  # magnitude of any number


class Rejected(ValueError):
    """A payload the guard refuses; ``cls`` is one of :data:`REJECT_CLASSES`."""

    def __init__(self, cls: str, detail: str):
        self.cls, self.detail = cls, " ".join(str(detail).split())[:300]
        super().__init__(f"{cls}: {self.detail}")


# What an instruction smuggled into a tool's output looks like (matched case-insensitively on NFKC text).
SMUGGLING: tuple[tuple[str, re.Pattern], ...] = tuple((name, re.compile(p, re.IGNORECASE | re.DOTALL)) for name, p in (
    ("override", r"\b(ignore|disregard|forget|override|bypass)\b.{0,40}\b(instructions?|rules?|prompts?|previous|above|"
                 r"guard(rails?)?|polic(y|ies)|safety|constraints?)\b"),
    ("role tag", r"(^|\n)\s*(system|assistant|user|developer|tool)\s*:"),
    ("chat template", r"<\|?\s*(im_start|im_end|system|endoftext|assistant)\s*\|?>|\[/?(INST|SYS)\]"),
    ("persona", r"\b(you are now|act as|pretend to be|from now on you)\b"),
    ("new instructions", r"\b(new|updated|hidden|secret)\s+(instructions?|orders?|task)\b"),
    ("tool call", r"\b(call|invoke|run|execute|use)\s+(the\s+)?(tool|function|command)\b"),
    ("code", r"(\brm\s+-rf\b|\bdrop\s+table\b|;\s*--|\bexec\s*\(|\beval\s*\(|__import__|\bos\.system\b|\bsubprocess\b)"),
    ("template", r"\{\{.*?\}\}|\$\{.*?\}|```"),
    ("control characters", r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]"),
))


def smuggling(text: str) -> str | None:
    """The name of the first smuggling pattern ``text`` matches, or None."""
    norm = unicodedata.normalize("NFKC", text)
    for name, pat in SMUGGLING:
        if pat.search(norm) or (norm is not text and pat.search(text)):
            return name
    return None


_SCALARS = (bool, int, float, str, type(None))


def plain_copy(raw: Any, limits: Limits = Limits()) -> Any:
    """A copy of ``raw`` made of JSON types only, within ``limits``; :class:`Rejected` otherwise.

    Iterative (no recursion for a hostile depth to exhaust); types are checked with ``type(x) is``,
    so a subclass with booby-trapped methods is ``wrong_type`` and none of its code runs."""
    count = 0
    root: list = [None]
    stack: list[tuple[Any, Any, Any, int, str]] = [(raw, root, 0, 0, "payload")]  # (value, parent, key, depth, path)
    while stack:
        value, parent, key, depth, path = stack.pop()
        count += 1
        if count > limits.max_items:
            raise Rejected("too_large", f"more than {limits.max_items} values")
        if depth > limits.max_depth:
            raise Rejected("too_large", f"nested deeper than {limits.max_depth} levels at {path}")
        t = type(value)
        if t is str:
            if len(value) > limits.max_string:
                raise Rejected("too_large", f"{path}: string of {len(value)} characters (at most {limits.max_string})")
            out: Any = value
        elif t is float:
            if not math.isfinite(value):
                raise Rejected("not_finite", f"{path} is {value!r}")
            if abs(value) > limits.max_abs:
                raise Rejected("out_of_range", f"{path} = {value:g} exceeds {limits.max_abs:g} in magnitude")
            out = value
        elif t is int:
            if abs(value) > limits.max_abs:  # int compare: no overflow for huge ints
                raise Rejected("out_of_range", f"{path} is an integer of {len(str(abs(value)))} digits, over {limits.max_abs:g}")
            out = value
        elif t is bool or value is None:
            out = value
        elif t is dict:
            out = {}
            for k, v in value.items():  # a plain dict's own items(): no user code
                if type(k) is not str:
                    raise Rejected("wrong_type", f"{path} has a key of type {type(k).__name__}, not str")
                if len(k) > limits.max_string:
                    raise Rejected("too_large", f"{path} has a key of {len(k)} characters")
                stack.append((v, out, k, depth + 1, f"{path}.{k}"))
        elif t is list or t is tuple:
            out = [None] * len(value)
            for i, v in enumerate(value):
                stack.append((v, out, i, depth + 1, f"{path}[{i}]"))
        else:
            raise Rejected("wrong_type", f"{path} is a {t.__name__}, not a JSON value")
        parent[key] = out
    return root[0]


def _strings(value: Any):
    stack = [value]
    while stack:
        v = stack.pop()
        if type(v) is str:
            yield v
        elif type(v) is dict:
            stack.extend(v.keys())
            stack.extend(v.values())
        elif type(v) is list:
            stack.extend(v)


def check_strings(value: Any) -> None:
    """:class:`Rejected` (``smuggling``) if any string in a plain copy matches :data:`SMUGGLING`."""
    for s in _strings(value):
        hit = smuggling(s)
        if hit:
            raise Rejected("smuggling", f"{hit} pattern in {s[:60]!r}")


_PYDANTIC_CLASS = {
    "missing": "missing_field", "finite_number": "not_finite",
    "greater_than": "out_of_range", "greater_than_equal": "out_of_range", "less_than": "out_of_range",
    "less_than_equal": "out_of_range", "multiple_of": "out_of_range",
    "string_too_long": "too_large", "too_long": "too_large", "string_too_short": "out_of_range", "too_short": "out_of_range",
}


def _error_class(kind: str) -> str:
    if kind in _PYDANTIC_CLASS:
        return _PYDANTIC_CLASS[kind]
    if kind.endswith("_type") or kind.endswith("_parsing") or kind in ("literal_error", "enum", "is_instance_of"):
        return "wrong_type"
    return "invalid"


def check_schema(value: Any, schema: type[BaseModel]) -> BaseModel:
    """The schema's (frozen) model built from a plain copy; :class:`Rejected` naming the field otherwise."""
    try:
        return schema.model_validate(value)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        raise Rejected(_error_class(err["type"]), f"{where}: {err['msg']}") from None


def freeze(value: Any) -> Any:
    """A plain copy made read-only: dicts become mapping proxies, lists tuples."""
    if type(value) is dict:
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if type(value) is list:
        return tuple(freeze(v) for v in value)
    return value


Plausibility = Callable[[Any, Mapping[str, Any]], "str | None"]
"""A rule: (validated value, the caller's context) -> None if plausible, else why not."""


def _get(value: Any, field: str) -> Any:
    return value.get(field) if isinstance(value, Mapping) else getattr(value, field, None)


def near(field: str, expected: str = "expected", tolerance: str = "tolerance") -> Plausibility:
    """Plausible when ``|value.field - context[expected]| <= context[tolerance]``; a caller that
    gives no expectation (no key in its context) accepts any value that passed the schema."""

    def rule(value: Any, ctx: Mapping[str, Any]) -> str | None:
        if ctx.get(expected) is None or ctx.get(tolerance) is None:
            return None
        v, e, tol = _get(value, field), float(ctx[expected]), float(ctx[tolerance])
        if not isinstance(v, (int, float)) or abs(float(v) - e) > tol:
            return f"{field} = {v!r}, expected {e:g} ± {tol:g}"
        return None

    return rule


def within(field: str, low: float, high: float) -> Plausibility:
    """Plausible when ``low <= value.field <= high`` (a domain bound tighter than the schema's)."""

    def rule(value: Any, ctx: Mapping[str, Any]) -> str | None:
        v = _get(value, field)
        if not isinstance(v, (int, float)) or not low <= v <= high:
            return f"{field} = {v!r} outside [{low:g}, {high:g}]"
        return None

    return rule


def all_of(*rules: Plausibility) -> Plausibility:
    """Every rule must hold; the first that fails gives the reason."""

    def rule(value: Any, ctx: Mapping[str, Any]) -> str | None:
        for r in rules:
            why = r(value, ctx)
            if why:
                return why
        return None

    return rule


def sanitize(raw: Any, schema: type[BaseModel] | None, limits: Limits = Limits(),
             plausible: Plausibility | None = None, context: Mapping[str, Any] | None = None) -> Any:
    """The four gates on one payload: the value the agent may see, or :class:`Rejected`."""
    plain = plain_copy(raw, limits)
    check_strings(plain)
    value = check_schema(plain, schema) if schema is not None else freeze(plain)
    if plausible is not None:
        why = plausible(value, context or {})
        if why:
            raise Rejected("implausible", why)
    return value
