"""Robotic warehouse floor (rware rules) for desim."""
from desim.models.warehouse.floor import Action, Direction, Floor
from desim.models.warehouse.layout import Layout, rware_task

__all__ = ["Action", "Direction", "Floor", "Layout", "rware_task"]
