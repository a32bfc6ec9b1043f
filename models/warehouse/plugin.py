"""The warehouse's plugin (entry point ``warehouse``): its ``[warehouse]`` section and the model."""
from desim.models.warehouse.scenario import register

__all__ = ["register"]
