"""Care situation document <-> becare Bundle, and the normaliser of legacy vendor input.

``load_document`` reads and checks a document (JSON or YAML), ``to_bundle`` maps it to a
transaction Bundle, ``to_document`` maps a Bundle back and ``normalise`` fixes what vendors send
today. All four are pure; the command line (``becare map``) is the I/O edge.
"""

from adapter.mapping.document import DocumentError, DocumentProblem, load_document, validate
from adapter.mapping.forward import to_bundle
from adapter.mapping.model import CareSituation
from adapter.mapping.normalise import Change, Normalised, normalise
from adapter.mapping.reverse import to_document

__all__ = [
    "CareSituation",
    "Change",
    "DocumentError",
    "DocumentProblem",
    "Normalised",
    "load_document",
    "normalise",
    "to_bundle",
    "to_document",
    "validate",
]
