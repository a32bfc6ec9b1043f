"""Faults as a declarative schedule, in the manner of Jepsen's nemesis.

Each fault starts at ``at`` and, if it has a ``duration``, heals itself after
it; ``heal`` ends every active fault. The network recomputes routes whenever
the set of cut edges changes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from desim.network.transport import Network

FAULT_KINDS = ("isolate", "split", "bridge", "cut", "flap", "latency_spike", "slow_link", "heal")


@dataclass(frozen=True)
class Fault:
    """One scheduled fault.

    - isolate: cut every link of ``nodes``
    - split: cut every link between nodes of different ``groups``; nodes in no
      group keep all their links (list every node for a full Jepsen split)
    - bridge: a split where the ``bridge`` node keeps its links to every group
    - cut: the one link ``between`` two adjacent nodes, both directions
    - flap: ``links`` go down and up every ``period`` seconds for ``duration``
    - latency_spike: ``links`` (all if empty) get ``extra_delay`` seconds and ``delay_scale``
    - slow_link: ``links`` (all if empty) have bandwidth multiplied by ``bandwidth_scale``
    - heal: end all active faults
    """

    at: float
    kind: str
    duration: float | None = None
    nodes: tuple[str, ...] = ()
    groups: tuple[tuple[str, ...], ...] = ()
    bridge: str | None = None
    links: tuple[tuple[str, str], ...] = ()
    period: float = 1.0
    extra_delay: float = 0.0
    delay_scale: float = 1.0
    bandwidth_scale: float = 1.0
    between: tuple[str, str] | None = None

    def __post_init__(self):
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (expected one of {', '.join(FAULT_KINDS)})")
        if self.at < 0:
            raise ValueError("at must be >= 0")
        if self.duration is not None and self.duration <= 0:
            raise ValueError("duration must be > 0")
        if self.kind == "flap" and (self.period <= 0 or self.duration is None):
            raise ValueError("flap needs period > 0 and a duration")
        if self.kind in ("split", "bridge") and len(self.groups) < 2:
            raise ValueError(f"{self.kind} needs at least two groups")
        if self.kind == "bridge" and not self.bridge:
            raise ValueError("bridge needs a bridge node")
        if self.kind == "isolate" and not self.nodes:
            raise ValueError("isolate needs nodes")
        if self.kind == "cut" and (self.between is None or len(self.between) != 2):
            raise ValueError("cut needs between, the two nodes of one link")
        if self.kind == "cut" and self.between[0] == self.between[1]:
            raise ValueError(f"cut needs two different nodes, got {self.between[0]!r} twice")
        if self.between is not None and self.kind != "cut":
            raise ValueError(f"between is a cut's link; a {self.kind} fault does not take it")
        if self.kind == "flap" and not self.links:
            raise ValueError("flap needs links")
        if self.kind == "slow_link" and not 0 < self.bandwidth_scale:
            raise ValueError("bandwidth_scale must be > 0")

    def named_nodes(self) -> set[str]:
        names = set(self.nodes) | {n for grp in self.groups for n in grp} | {n for e in self.links for n in e}
        if self.bridge:
            names.add(self.bridge)
        if self.between:
            names.update(self.between)
        return names

    def cuts(self, graph) -> set[frozenset]:
        """The undirected edges this fault cuts while active."""
        if self.kind == "cut":
            return {frozenset(self.between)}
        if self.kind == "isolate":
            return {frozenset(e) for n in self.nodes for e in graph.edges(n)}
        if self.kind in ("split", "bridge"):
            group_of = {n: i for i, grp in enumerate(self.groups) for n in grp}
            return {frozenset((u, v)) for u, v in graph.edges
                    if u in group_of and v in group_of and group_of[u] != group_of[v] and self.bridge not in (u, v)}
        return set()


def schedule(net: "Network", faults: list[Fault]):
    """Start one SimPy process per fault."""
    for i, fault in enumerate(sorted(faults, key=lambda f: f.at)):
        net.env.process(_run_fault(net, i, fault))


def _run_fault(net: "Network", fid: int, fault: Fault):
    env = net.env
    yield env.timeout(fault.at)
    if fault.kind == "heal":
        net.heal_all()
        return
    if fault.kind == "flap":
        end = env.now + fault.duration
        down = False
        while env.now < end:
            down = not down
            net.set_fault(fid, fault, {frozenset(e) for e in fault.links} if down else set())
            yield env.timeout(min(fault.period, end - env.now))
        net.clear_fault(fid)
        return
    net.set_fault(fid, fault, fault.cuts(net.graph))
    if fault.duration is not None:
        yield env.timeout(fault.duration)
        net.clear_fault(fid)
