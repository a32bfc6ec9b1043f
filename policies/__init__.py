"""Brains and learners; registered with the kernel by :mod:`desim.policies.plugin`.

``make_brain(spec, rng)`` builds a brain from its spec (``greedy``,
``epsilon_greedy:0.1``, ``checkpoint:PATH#argmax``; see :mod:`desim.policies.spec`).
"""
from desim.policies.spec import BrainSpec, brain_names, check_brain, learner_class, learner_names, make_brain

__all__ = ["BrainSpec", "brain_names", "check_brain", "learner_class", "learner_names", "make_brain"]
