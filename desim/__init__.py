"""desim: a discrete-event test bench for multi-agent RL under production conditions."""
from importlib import import_module

__all__ = ["Agent", "Brain", "Message", "Recorder", "RngStreams", "Simulation"]
__version__ = "0.1.0"

_WHERE = {"Agent": "desim.agent", "Brain": "desim.agent", "Message": "desim.message", "Recorder": "desim.recorder",
          "RngStreams": "desim.rng", "Simulation": "desim.sim"}


def __getattr__(name: str):
    # lazy, so `desim validate` does not pay for importing Mesa
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'desim' has no attribute {name!r}")
