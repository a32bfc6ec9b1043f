"""The network layer: topologies, links, faults, jitter buffers, transport."""
from network.distributions import DelayDist
from network.faults import Fault, schedule
from network.link import LinkSpec
from network.loss import LossModel
from network.transport import Network

__all__ = ["DelayDist", "Fault", "LinkSpec", "LossModel", "Network", "schedule"]
