"""Robotic warehouse floor (rware rules) for desim."""
from models.warehouse.floor import Action, Direction, Floor
from models.warehouse.layout import Layout, rware_task

__all__ = ["Action", "Direction", "Floor", "Layout", "rware_task"]
