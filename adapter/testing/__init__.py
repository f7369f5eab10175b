"""Test helpers for becare and for vendors who test their FHIR output against it.

Importing this package must stay cheap: pytest loads the plugin (``adapter.testing.plugin``) for
every test run of every project that has becare installed, most of which never validate anything.
The validator, the service and the mock hub are imported only when a helper or fixture is used.
"""

from adapter.testing.assertions import BecareValidationError, assert_invalid, assert_valid, validate
from adapter.testing.files import becare_files

__all__ = ["BecareValidationError", "assert_invalid", "assert_valid", "becare_files", "validate"]
