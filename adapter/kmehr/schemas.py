"""The official eHealth XSDs, compiled once, offline, for KMEHR messages and hubservices v3 bodies.

Why here and not in each caller: compiling the KMEHR schema set takes ~0.5 s and the hub schemas
import it, so one cache serves the writer, the reader, the hub client and the mock hub. The files
are vendored under ``profiles/ehealth-xsd/`` (see its SOURCES.md); nothing is fetched at run time:
a ``schemaLocation`` outside that folder is refused, never downloaded.

Versions go together as the hubs publish them: hubservices 3.2 imports KMEHR 1.19, 3.5 imports
KMEHR 1.26, so a PutTransaction body is checked against the KMEHR version it carries.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from lxml import etree

from adapter.datafiles import data_dir

KmehrVersion = Literal["1.19", "1.26"]
HubVersion = Literal["3.2", "3.5"]
KMEHR_VERSIONS: tuple[KmehrVersion, ...] = ("1.19", "1.26")
KMEHR_FOR_HUB: dict[str, KmehrVersion] = {"3.2": "1.19", "3.5": "1.26"}

# the last CD-STANDARD value each schema enumerates: what a message of that version declares
STANDARD_FOR_KMEHR: dict[str, str] = {"1.19": "20161201", "1.26": "20180901"}

_FILES = {
    ("kmehr", "1.19"): "hub-3.2/ehealth-kmehr/XSD/kmehr_elements-1_19.xsd",
    ("kmehr", "1.26"): "hub-3.5/ehealth-kmehr/XSD/kmehr_elements-1_26.xsd",
    ("hub", "3.2"): "hub-3.2/ehealth-hubservices/XSD/hubservices_protocol-3_2.xsd",
    ("hub", "3.5"): "hub-3.5/ehealth-hubservices/XSD/hubservices_protocol-3_5.xsd",
    ("saml", "1.1"): "hub-3.5/external/XSD/oasis-sstc-saml-schema-assertion-1.1.xsd",
}

_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class _Offline(etree.Resolver):
    root: Path

    def resolve(self, url: str | None, pubid: str | None, context: object) -> object:
        if not url:
            return None
        if "://" in url and not url.startswith("file://"):
            raise etree.XMLSchemaParseError(f"refusing to fetch {url}: schemas are vendored")
        path = Path(url.removeprefix("file://")).resolve()
        if self.root not in path.parents:
            raise etree.XMLSchemaParseError(f"refusing schema outside the vendored folder: {url}")
        return None  # lxml loads the local file itself


def schema_root() -> Path:
    return (data_dir("profiles") / "ehealth-xsd").resolve()


@cache
def _compiled(kind: str, version: str) -> etree.XMLSchema:
    try:
        rel = _FILES[(kind, version)]
    except KeyError:
        raise ValueError(f"no {kind} schema for version {version!r}") from None
    root = schema_root()
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    parser.resolvers.add(_Offline(root))
    doc = etree.parse(str(root / rel), parser)
    return etree.XMLSchema(doc)


def schema(kind: Literal["kmehr", "hub", "saml"], version: str) -> etree.XMLSchema:
    """The compiled schema (thread-safe: lxml schema objects are not shared mid-compile)."""
    with _lock:
        return _compiled(kind, version)


def problems(kind: Literal["kmehr", "hub", "saml"], version: str, element: etree._Element) -> list[str]:
    """Every XSD error for ``element`` (empty when valid)."""
    xsd = schema(kind, version)
    with _lock:  # an XMLSchema's error_log belongs to its last validate() call
        if xsd.validate(element):
            return []
        return [f"{e.line}:{e.column}: {e.message}" for e in xsd.error_log]


def located_problems(
    kind: Literal["kmehr", "hub", "saml"], version: str, element: etree._Element
) -> list[tuple[str, str]]:
    """Every XSD error as (lxml's XPath of the offending element, message); empty when valid."""
    xsd = schema(kind, version)
    with _lock:
        if xsd.validate(element):
            return []
        return [(e.path or "", e.message) for e in xsd.error_log]

