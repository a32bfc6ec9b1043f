"""The network layer: topologies, links, faults, jitter buffers, transport."""
from desim.network.distributions import DelayDist
from desim.network.faults import Fault, schedule
from desim.network.link import LinkSpec
from desim.network.loss import LossModel
from desim.network.transport import Network
from desim.network import tables as _tables  # noqa: F401  (declares the network's store tables)

__all__ = ["DelayDist", "Fault", "LinkSpec", "LossModel", "Network", "schedule"]
