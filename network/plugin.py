"""The network's part of a scenario: its sections, registered with the kernel (entry point ``network``)."""
from __future__ import annotations

from desim.registry import SectionSpec, sections
from desim.network.config import FaultCfg, JitterCfg, LinksCfg, ReliableCfg, TopologyCfg, TrafficCfg


def register() -> None:
    owner = "desim.network"
    sections.register("topology", SectionSpec(TopologyCfg, TopologyCfg(), owner=owner, description="the network graph"))
    sections.register("links", SectionSpec(LinksCfg, LinksCfg(), owner=owner, description="link models: default, wireless, overrides"))
    sections.register("jitter_buffer", SectionSpec(JitterCfg, JitterCfg(), owner=owner, description="per-stream playout buffers"))
    sections.register("reliable", SectionSpec(ReliableCfg, ReliableCfg(), owner=owner, description="retries of reliable messages"))
    sections.register("traffic", SectionSpec(TrafficCfg, many=True, owner=owner, description="network-only workload flows"))
    sections.register("faults", SectionSpec(FaultCfg, many=True, owner=owner, description="the fault schedule (nemesis)"))
