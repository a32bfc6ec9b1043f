"""The unit of communication between agents."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Message:
    """An immutable message from ``src`` to ``dst``.

    ``size`` is in bytes (it drives serialization delay on bandwidth-limited
    links); ``seq`` is the sender's per-destination sequence number (the jitter
    buffer orders by it); ``policy_version`` stamps the sender's brain version
    so learners can measure staleness. ``corrupted`` is set by a link that
    corrupts the payload in flight; receivers decide what to do with it.
    """

    src: str
    dst: str
    kind: str
    payload: Any = None
    size: int = 64
    sent_at: float = 0.0
    seq: int = 0
    policy_version: int = 0
    reliable: bool = False
    corrupted: bool = field(default=False, compare=False)
