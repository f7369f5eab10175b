"""FHIRPath over the internal form: fhirpathpy plus the FHIR functions and fixes it lacks."""

from adapter.fhirpath.engine import FhirPathEngine
from adapter.fhirpath.native import native_invariant
from adapter.fhirpath.parsing import FhirPathError
from adapter.fhirpath.xhtml import html_checks, narrative_problems

__all__ = ["FhirPathEngine", "FhirPathError", "html_checks", "narrative_problems", "native_invariant"]
