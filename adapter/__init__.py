"""becare: the FHIR interoperability adapter for Belgian integrated care."""

from adapter.native import loader as _native_loader

__version__ = "0.1.0"

# before any validation module is imported: the compiled ones replace them only all together
_native_loader.install()
