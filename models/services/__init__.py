"""Production services on the network: an inventory database and tool services behind a fault injector.

- ``config``: the scenario sections ``[inventory]``, ``[tools]`` and ``[[tool_faults]]``, the service
  nodes they add to a topology, their checks and event-rate estimate (cheap to import: no Mesa);
- ``inventory``: the inventory service (a primary and replicas with replication lag, locks with
  contention and timeouts, read-your-writes on request; every read carries its version and time);
- ``faults``: the token bucket and the fault injector (500/503, 429, timeouts, slow answers,
  malformed payloads, Byzantine values), scheduled declaratively;
- ``tools``: the tool services (inventory lookup, price check, procurement/restock) and the RPC
  client the tool-using agents call them with.

Everything here draws from its own named RNG streams, so a scenario without these sections is
untouched, and one with them shifts nobody else's draws.
"""
