"""Episode registry across submissions (IC-ONE-1/2)."""

from adapter.registry.conflicts import Conflict
from adapter.registry.db import RegistryError
from adapter.registry.model import EpisodeRole
from adapter.registry.store import EpisodeRegistry, Recorded

__all__ = ["Conflict", "EpisodeRegistry", "EpisodeRole", "Recorded", "RegistryError"]
