"""Where the vendored data (profiles, rules, mappings) lives at run time.

An editable install reads the folders at the repository root; a wheel carries them under
``adapter/_data``. The product never reads ``../shared`` at run time.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the folder ``name`` (``profiles``, ``rules`` or ``mappings``)."""
    packaged = _PACKAGE / "_data" / name
    if packaged.is_dir():
        return packaged
    return _PACKAGE.parent / name
