"""Conformance resources (StructureDefinition, ValueSet, CodeSystem, NamingSystem) and snapshots."""

from adapter.conformance.store import (
    ConformanceError,
    ConformanceStore,
    SnapshotError,
    build_default_store,
    default_store,
)

__all__ = [
    "ConformanceError",
    "ConformanceStore",
    "SnapshotError",
    "build_default_store",
    "default_store",
]
