"""FHIR R4 validation: structure, terminology, invariants, profiles, bundles, rulebook."""

from adapter.validation.api import Report, ValidationOptions
from adapter.validation.issues import Issue, operation_outcome

__all__ = ["Issue", "Report", "ValidationOptions", "Validator", "operation_outcome"]


def __getattr__(name: str) -> object:
    # The engine pulls in the conformance store and FHIRPath; import it only when asked for.
    if name == "Validator":
        from adapter.validation.engine import Validator

        return Validator
    raise AttributeError(name)
