"""The simulation: one SimPy clock, named RNG streams, a Mesa model, a recorder."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import mesa
import simpy

from desim.message import Message
from desim.recorder import Recorder
from desim.rng import RngStreams

if TYPE_CHECKING:
    from desim.agent import Agent


class Simulation:
    """Owns the clock (``env``), randomness (``rng``), agent registry (``model``) and trace.

    Time is in seconds. A network, when attached, carries every message; without
    one, messages are delivered instantly.
    """

    def __init__(self, seed: int = 0, keep_trace: bool = True):
        self.seed = int(seed)
        self.env = simpy.Environment()
        self.rng = RngStreams(self.seed)
        self.model = mesa.Model(rng=self.rng.stream("mesa"))
        self.recorder = Recorder(keep_trace=keep_trace)
        self.agents: dict[str, "Agent"] = {}
        self.network = None  # set by network.Network

    @property
    def now(self) -> float:
        return self.env.now

    def register(self, agent: "Agent") -> None:
        if agent.name in self.agents:
            raise ValueError(f"duplicate agent name {agent.name!r}")
        self.agents[agent.name] = agent

    def send(self, msg: Message) -> None:
        if self.network is not None:
            self.network.send(msg)
        else:
            self.recorder.record(self.env.now, "deliver", msg.src, msg.dst, msg.seq)
            self.agents[msg.dst].deliver(msg)

    def run(self, until: float, progress: Callable[[float], None] | None = None, chunks: int = 100) -> None:
        """Run to simulated time ``until``; ``progress(now)`` is called ``chunks`` times."""
        if progress is None:
            self.env.run(until=until)
            return
        start = self.env.now
        for i in range(1, chunks + 1):
            self.env.run(until=start + (until - start) * i / chunks)
            progress(self.env.now)

    def call_soon(self, fn: Callable[[simpy.Event], None], priority: int = simpy.events.URGENT) -> None:
        """Call ``fn(event)`` later in this instant, without a process: a triggered event
        scheduled now at ``priority`` (``URGENT``: ahead of the instant's normal events,
        where a new process takes its first step; a larger number: after them)."""
        ev = self.env.event()
        ev._ok, ev._value = True, None
        ev.callbacks.append(fn)
        self.env.schedule(ev, priority)

    @property
    def trace_hash(self) -> str:
        return self.recorder.trace_hash
