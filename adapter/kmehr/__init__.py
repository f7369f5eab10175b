"""KMEHR for Belgian hubs: a becare Bundle as a ``careplan`` transaction, and back.

``to_kmehr`` writes a ``kmehrmessage`` (XSD-valid for KMEHR 1.19 or 1.26), ``from_kmehr`` reads
one into becare Bundles; both raise ``KmehrError`` for bad input. The mapping itself is data:
``mappings/kmehr.yaml`` (see docs/kmehr.md).
"""

from adapter.kmehr.errors import KmehrBug, KmehrError
from adapter.kmehr.reader import from_kmehr
from adapter.kmehr.writer import Party, Sender, to_kmehr, to_kmehr_bytes, transaction_ids

__all__ = [
    "KmehrBug",
    "KmehrError",
    "Party",
    "Sender",
    "from_kmehr",
    "to_kmehr",
    "to_kmehr_bytes",
    "transaction_ids",
]
