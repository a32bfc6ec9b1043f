"""Robotic warehouse floor (rware rules) for desim."""
from desim.models.warehouse.floor import Action, Direction, Floor
from desim.models.warehouse.layout import Layout, rware_task
from desim.models.warehouse import tables as _tables  # noqa: F401  (declares the warehouse's store tables)

__all__ = ["Action", "Direction", "Floor", "Layout", "rware_task"]
