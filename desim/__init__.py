"""desim: a discrete-event test bench for multi-agent RL under production conditions."""
from desim.agent import Agent, Brain
from desim.message import Message
from desim.recorder import Recorder
from desim.rng import RngStreams
from desim.sim import Simulation

__all__ = ["Agent", "Brain", "Message", "Recorder", "RngStreams", "Simulation"]
__version__ = "0.1.0"
