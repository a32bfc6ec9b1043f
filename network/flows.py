"""Traffic flows of a network-only workload (the senders live in network.traffic)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Flow:
    """Each sender emits Poisson(rate) messages of exponential(size) bytes to a
    destination drawn uniformly from ``dsts`` (a dict sender -> candidates)."""

    senders: tuple[str, ...]
    dsts: dict[str, tuple[str, ...]]
    rate: float
    size: int
    kind: str = "status"
    reliable: bool = False
    reply: bool = False
