"""A network-only workload: nodes that talk to each other at Poisson rates.

Used by network scenarios (no warehouse) and by tests and benchmarks.
"""
from __future__ import annotations

from desim.agent import Agent
from desim.network.flows import Flow


class Node(Agent):
    """A network endpoint: runs its flows' senders and answers requests that ask for a reply."""

    def __init__(self, sim, name: str, role: str, flows: list[Flow]):
        self.flows = [f for f in flows if name in f.senders]
        super().__init__(sim, name, role=role)
        self.received = 0
        for i, flow in enumerate(self.flows):
            sim.env.process(self._emit(i, flow))

    def _emit(self, i: int, flow: Flow):
        env = self.sim.env
        rng = self.sim.rng.stream(f"traffic:{self.name}:{i}")
        dsts = flow.dsts[self.name]
        while True:
            yield env.timeout(rng.exponential(1.0 / flow.rate))
            dst = dsts[int(rng.integers(len(dsts)))] if len(dsts) > 1 else dsts[0]
            size = max(1, int(rng.exponential(flow.size)))
            self.send(dst, flow.kind, payload={"reply": flow.reply}, size=size, reliable=flow.reliable)

    def on_message(self, msg) -> None:
        self.received += 1
        if isinstance(msg.payload, dict) and msg.payload.get("reply") and not msg.kind.endswith(":ack"):
            self.send(msg.src, msg.kind + ":ack", payload={"reply": False}, size=msg.size, reliable=msg.reliable)
