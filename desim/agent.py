"""Agents and brains.

An agent is a SimPy process with an inbox. It never touches another agent's
state: it learns about the world from messages, and acts by sending them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

import mesa
import simpy

from desim.message import Message
from desim.scenario import NotANode

if TYPE_CHECKING:
    from desim.sim import Simulation


def _not_a_node(name: str, graph: Any, role: str) -> str:
    """One line: the agent, and the topology's nodes it could be (close names, else nodes of its role)."""
    import difflib

    nodes = [str(n) for n in graph]
    close, what = difflib.get_close_matches(str(name), nodes, n=5, cutoff=0.6), "close names"
    if not close:
        same_role = sorted(str(n) for n, r in graph.nodes(data="role") if r == role)
        close, what = (same_role, f"nodes with role {role!r}") if same_role else (sorted(nodes), "nodes")
        close = close[:8]
    return (f"agent {name!r} is not a node of the topology ({len(nodes)} nodes; {what}: {', '.join(close) or 'none'}); "
            "name the agent after a node, or add it to the topology")


@runtime_checkable
class Brain(Protocol):
    """Anything that maps a batch of observations to a batch of actions.

    Decisions that fall on the same simulated instant are batched into one
    ``act`` call, so a torch policy runs one forward pass for all of them.
    """

    policy_version: int

    def act(self, observations: Sequence[Any]) -> Sequence[Any]: ...


class Agent(mesa.Agent):
    """A named SimPy process with an inbox and an optional brain.

    Subclasses override :meth:`behaviour` (a generator). The agent is also a
    Mesa agent, so it appears in ``sim.model.agents`` for data collection.
    """

    role = "agent"

    def __init__(self, sim: "Simulation", name: str, brain: Brain | None = None, role: str | None = None):
        net = sim.network
        if net is not None and name not in net.graph:  # at build time, not at its first send
            raise NotANode(_not_a_node(name, net.graph, role or self.role))
        super().__init__(sim.model)
        self.sim = sim
        self.name = name
        self.brain = brain
        if role is not None:
            self.role = role
        self.inbox: simpy.Store = simpy.Store(sim.env)
        self._next_seq: dict[str, int] = {}
        sim.register(self)
        self.process = sim.env.process(self.behaviour())

    @property
    def policy_version(self) -> int:
        return getattr(self.brain, "policy_version", 0)

    def send(self, dst: str, kind: str, payload: Any = None, size: int = 64, reliable: bool = False) -> Message:
        """Send a message through the simulation's network (or directly, if it has none)."""
        seq = self._next_seq.get(dst, 0)
        self._next_seq[dst] = seq + 1
        msg = Message(self.name, dst, kind, payload, size, self.sim.env.now, seq, self.policy_version, reliable)
        self.sim.send(msg)
        return msg

    def receive(self) -> simpy.events.Event:
        """An event that fires with the next message in the inbox."""
        return self.inbox.get()

    def deliver(self, msg: Message) -> None:
        """Called by the network when ``msg`` arrives; default: queue in the inbox."""
        self.inbox.put(msg)

    def behaviour(self):
        """The agent's life. Default: consume messages and hand them to :meth:`on_message`."""
        while True:
            msg = yield self.inbox.get()
            self.on_message(msg)

    def on_message(self, msg: Message) -> None:  # pragma: no cover - default is to ignore
        pass
