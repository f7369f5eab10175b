"""The WSDL and XSDs the service publishes, from the vendored copies in ``profiles/gitb/``.

Two things change on the way out: the ``soap:address`` of ``ValidationServicePort`` becomes the
URL the client called (so a test bed that fetched ``…/gitb/validation?wsdl`` posts back to the
same place, behind whatever proxy it went through), and every ``schemaLocation`` points to
``…/gitb/validation?xsd=NAME`` so that the imports resolve from the service itself.
The ``ValidationClientService`` (the test bed's log callback) is left as published.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lxml import etree

from adapter.datafiles import data_dir
from adapter.gitb.ns import XSD

SCHEMAS = ("gitb_vs.xsd", "gitb_tr.xsd", "gitb_core.xsd")
_WSDL = "http://schemas.xmlsoap.org/wsdl/"
_WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"


def gitb_dir() -> Path:
    return data_dir("profiles") / "gitb"


def _parse(path: Path) -> etree._ElementTree:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.parse(str(path), parser)


def _point_imports(root: etree._Element, endpoint: str) -> None:
    for imp in root.iter(f"{{{XSD}}}import", f"{{{XSD}}}include"):
        location = imp.get("schemaLocation")
        if location:
            imp.set("schemaLocation", f"{endpoint}?xsd={location.rsplit('/', 1)[-1]}")


@lru_cache(maxsize=16)
def wsdl_text(endpoint: str) -> bytes:
    """``gitb_vs.wsdl`` with its address and imports pointing at ``endpoint``."""
    tree = _parse(gitb_dir() / "wsdl" / "gitb_vs.wsdl")
    root = tree.getroot()
    _point_imports(root, endpoint)
    for service in root.iterfind(f"{{{_WSDL}}}service[@name='ValidationService']"):
        for address in service.iterfind(f"{{{_WSDL}}}port/{{{_WSDL_SOAP}}}address"):
            address.set("location", endpoint)
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")


@lru_cache(maxsize=64)
def xsd_text(name: str, endpoint: str) -> bytes | None:
    """One of the imported schemas, its own imports pointing at ``endpoint``; None if unknown."""
    if name not in SCHEMAS:
        return None
    tree = _parse(gitb_dir() / "schema" / name)
    _point_imports(tree.getroot(), endpoint)
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
