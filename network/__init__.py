"""The network layer: topologies, links, faults, jitter buffers, transport.

Exports resolve on first use, so reading a scenario's network sections
(``desim.network.config``) does not import the transport, SciPy or Mesa.
The network's store tables are declared by :mod:`desim.network.tables`.
"""
from importlib import import_module

__all__ = ["DelayDist", "Fault", "LinkSpec", "LossModel", "Network", "schedule"]
_WHERE = {"DelayDist": "distributions", "Fault": "faults", "schedule": "faults", "LinkSpec": "link",
          "LossModel": "loss", "Network": "transport"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
