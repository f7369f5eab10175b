"""Episode registry across submissions (IC-ONE-1/2)."""

from adapter.registry.store import EpisodeRegistry, EpisodeRole

__all__ = ["EpisodeRegistry", "EpisodeRole"]
