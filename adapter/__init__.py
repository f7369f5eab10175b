"""becare: the FHIR interoperability adapter for Belgian integrated care."""

__version__ = "0.1.0"
