"""XML namespaces of the GITB validation service API and of SOAP 1.1.

The trap (gitb_vs.xsd has no ``elementFormDefault``): the local elements of the vs messages
(``sessionId``, ``config``, ``input``, ``module``, ``report``) are in *no* namespace, while
``value`` / ``item`` (gitb_core.xsd) and everything inside a TAR (gitb_tr.xsd) are qualified.
"""

from __future__ import annotations

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
VS = "http://www.gitb.com/vs/v1/"
TR = "http://www.gitb.com/tr/v1/"
CORE = "http://www.gitb.com/core/v1/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"
WSA = "http://www.w3.org/2005/08/addressing"
WSA_NAMESPACES = frozenset({WSA, "http://schemas.xmlsoap.org/ws/2004/08/addressing"})
WSA_ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"

# wsam:Action of the WSDL's operations (gitb_vs.wsdl, portType ValidationService)
ACTIONS = {
    "getModuleDefinition": "http://gitb.com/ValidationService/getModuleDefinitionResponse",
    "validate": "http://gitb.com/ValidationService/validateResponse",
}


def local(tag: object) -> str:
    """The local name of an lxml tag (``{ns}name`` or ``name``); '' for comments and PIs."""
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2]


def namespace(tag: object) -> str | None:
    if not isinstance(tag, str) or not tag.startswith("{"):
        return None
    return tag[1:].partition("}")[0]
