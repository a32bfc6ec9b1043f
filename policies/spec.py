"""Brain specs, parsed in one place: ``NAME[:ARG][#MODE]``.

``greedy``, ``random``, ``epsilon_greedy:0.1``, ``checkpoint:runs/ck/latest.pt#argmax``.
The name picks a brain kind in the policy registry (:data:`desim.registry.policies`);
``ARG`` is the kind's argument (an epsilon, a checkpoint path); ``MODE`` how a
learned policy acts (``sample`` or ``argmax``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from desim.registry import UnknownName, policies


@dataclass(frozen=True)
class BrainSpec:
    name: str
    arg: str = ""
    mode: str = ""

    @classmethod
    def parse(cls, spec: str) -> "BrainSpec":
        """Split a spec string; ValueError (one line) if it names no registered brain."""
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(f"brain spec must be a non-empty string, got {spec!r}")
        head, _, mode = spec.partition("#")
        name, _, arg = head.partition(":")
        out = cls(name, arg, mode)
        out.entry()  # unknown names fail here
        return out

    def entry(self):
        try:
            e = policies.get(self.name)
        except UnknownName:
            known = ", ".join(n + (":ARG" if policies.get(n).needs_arg else "") for n in brain_names())
            raise ValueError(f"unknown brain {str(self)!r} (expected one of {known})") from None
        if e.kind != "brain":
            raise ValueError(f"{self.name!r} is a learner, not a brain (use checkpoint:PATH with a checkpoint it wrote)")
        return e

    def __str__(self) -> str:
        return self.name + (f":{self.arg}" if self.arg else "") + (f"#{self.mode}" if self.mode else "")


def brain_names() -> list[str]:
    return [n for n, e in policies.items() if e.kind == "brain"]


def learner_names() -> list[str]:
    return [n for n, e in policies.items() if e.kind == "learner"]


def check_brain(spec: str | BrainSpec) -> BrainSpec:
    """Validate a spec without building the brain (a checkpoint is not loaded); ValueError, one line."""
    s = spec if isinstance(spec, BrainSpec) else BrainSpec.parse(spec)
    e = s.entry()
    if e.check is not None:
        e.check(s.arg, s.mode)
    elif s.mode:
        raise ValueError(f"{s}: brain {s.name!r} takes no #mode")
    return s


def make_brain(spec: str | BrainSpec, rng: np.random.Generator):
    """The brain a spec names, drawing its randomness from ``rng``; ValueError (one line) for a bad spec."""
    s = check_brain(spec)
    return s.entry().make(s.arg, s.mode, rng)


def learner_class(algo: str):
    """The learner class registered as ``algo``; ValueError (one line) if unknown or not importable."""
    try:
        e = policies.get(algo)
    except UnknownName:
        raise ValueError(f"unknown algo {algo!r} (expected one of {', '.join(learner_names())})") from None
    if e.kind != "learner":
        raise ValueError(f"unknown algo {algo!r} (expected one of {', '.join(learner_names())})")
    try:
        return e.load_target()
    except (ImportError, AttributeError) as err:
        raise ValueError(f"algo {algo!r} is not available ({e.target}: {err})") from None
