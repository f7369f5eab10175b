"""Offline terminology: is a code in a value set, is it a code of a code system.

Answers are three-valued (``CodeResult.status``): "unknown" where the content is not
available offline (SNOMED CT, LOINC, fragment code systems), never a false "invalid".
"""

from adapter.terminology.codesystem import CodeSystemIndex
from adapter.terminology.result import CodeResult
from adapter.terminology.service import Terminology

__all__ = ["CodeResult", "CodeSystemIndex", "Terminology"]
