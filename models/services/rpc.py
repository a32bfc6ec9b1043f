"""Request and answer over the network: an agent that can wait for a reply, with a timeout.

A request carries ``id`` and ``reply_to``; the answer carries the same ``id``.
An answer that comes after its timeout is dropped (counted as ``late``); one
corrupted on a link arrives marked ``corrupted`` and is handed to the caller
as such, who decides what that means.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from desim.agent import Agent


@dataclass(frozen=True)
class Reply:
    """What came back: the answer's payload (None on a timeout), when, and whether a link corrupted it."""

    payload: Any
    latency: float
    timed_out: bool = False
    corrupted: bool = False


class RpcAgent(Agent):
    """An agent that serves requests (:meth:`serve`, by message kind) and makes them (:meth:`rpc`)."""

    role = "service"

    def __init__(self, sim, name: str, brain=None, role: str | None = None):
        self._pending: dict[int, Any] = {}
        self._next_id = 0
        self.late = 0
        super().__init__(sim, name, brain=brain, role=role)

    def behaviour(self):
        return
        yield  # reacts to messages only; requests it serves start their own processes

    def deliver(self, msg) -> None:
        payload = msg.payload
        rid = payload.get("id") if isinstance(payload, dict) else None
        if msg.kind.endswith(":reply"):
            waiter = self._pending.pop(rid, None) if rid is not None else None
            if waiter is None or waiter.triggered:
                self.late += 1
                return
            waiter.succeed((payload, msg.corrupted))
            return
        if msg.corrupted:  # a request mangled on the wire: the server cannot read it; the caller times out
            return
        self.serve(msg)

    def serve(self, msg) -> None:  # pragma: no cover - servers override
        pass

    def answer(self, request, payload: dict, size: int = 128) -> None:
        """Send ``payload`` back to whoever sent ``request`` (a Message), under the request's id."""
        self.send(request.payload["reply_to"], request.kind + ":reply", {**payload, "id": request.payload["id"]}, size=size)

    def rpc(self, dst: str, kind: str, payload: dict, timeout: float, size: int = 128):
        """A generator: send a request, wait for its answer at most ``timeout`` seconds; returns a :class:`Reply`."""
        env = self.sim.env
        rid = self._next_id
        self._next_id += 1
        waiter = env.event()
        self._pending[rid] = waiter
        t0 = env.now
        self.send(dst, kind, {**payload, "id": rid, "reply_to": self.name}, size=size)

        def expire(_ev, rid=rid, waiter=waiter):
            if not waiter.triggered:
                self._pending.pop(rid, None)
                waiter.succeed(None)

        env.timeout(timeout).callbacks.append(expire)
        got = yield waiter
        if got is None:
            return Reply(None, env.now - t0, timed_out=True)
        body, corrupted = got
        return Reply(body, env.now - t0, corrupted=corrupted)


def failed_status(reply: Reply) -> int | None:
    """The HTTP-like status of a call that got no readable answer: 504 when it timed out, 502 when a
    link corrupted the answer; None when the answer can be read."""
    return 504 if reply.timed_out else 502 if reply.corrupted else None
