"""Reading a SOAP 1.1 request to the GITB validation service: which operation, its payload, and
the WS-Addressing message id to answer to.

Headers are tolerated, whatever they are: the test bed sends WS-Addressing (``To``, ``Action``,
``MessageID``, ``ReplyTo`` pointing at its log callback) and its own ``gitb:TestSessionIdentifier``
/ ``TestCaseIdentifier`` / ``TestStepIdentifier`` / ``TestEngineVersion``. None of them changes
what is validated, so none is refused, ``mustUnderstand`` or not.

Anything that is not a GITB request at all (not XML, not a SOAP 1.1 envelope, a body element of
another API) is ``NotGitb``: the only case the service answers with a SOAP Fault.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from lxml import etree

from adapter.gitb.ns import SOAP11, SOAP12, VS, WSA_NAMESPACES, local, namespace

OPERATIONS = {"GetModuleDefinitionRequest": "getModuleDefinition", "ValidateRequest": "validate"}


class NotGitb(ValueError):
    """Not a GITB validation service request; ``reason`` is said in the SOAP Fault.
    ``version_mismatch`` marks a SOAP 1.2 envelope (faultcode ``VersionMismatch``)."""

    def __init__(self, reason: str, *, version_mismatch: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.version_mismatch = version_mismatch


@dataclass(frozen=True)
class SoapRequest:
    operation: str  # getModuleDefinition | validate
    payload: etree._Element  # the vs:GetModuleDefinitionRequest / vs:ValidateRequest element
    message_id: str | None = None  # wsa:MessageID, answered with wsa:RelatesTo
    addressing_ns: str | None = None  # the WS-Addressing namespace the caller used, if any


_LOCAL = threading.local()


def _parser() -> etree.XMLParser:
    """One hardened parser per thread (lxml parsers are cheap to reuse, costly to share).
    ``huge_tree``: a content embedded as one text node may pass libxml2's 10 MB text limit; the
    body itself is bounded by ``service.max_body_bytes`` before it gets here, and no entity is
    ever expanded (no DTD is loaded, a DOCTYPE is refused)."""
    parser = getattr(_LOCAL, "parser", None)
    if parser is None:
        parser = _LOCAL.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
            huge_tree=True, remove_comments=True, remove_pis=True, collect_ids=False,
        )
    return parser


def _doctype_at(data: bytes) -> bool:
    """A DOCTYPE in the prolog (before the first element): refused before lxml reads it."""
    head = data[:8192].lstrip(b"\xef\xbb\xbf \t\r\n")
    while head.startswith((b"<?", b"<!--")):
        end = head.find(b"?>" if head.startswith(b"<?") else b"-->")
        if end < 0:
            break
        head = head[end + 2 :].lstrip(b"> \t\r\n")
    return head[:9].upper() == b"<!DOCTYPE"


def read_request(data: bytes) -> SoapRequest:
    """The operation and payload of a SOAP 1.1 GITB request; ``NotGitb`` otherwise."""
    if _doctype_at(data):
        raise NotGitb("a DOCTYPE is not accepted")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise NotGitb(f"the body is not well-formed XML ({exc.msg})") from None
    if root.getroottree().docinfo.doctype:
        raise NotGitb("a DOCTYPE is not accepted")
    if local(root.tag) != "Envelope":
        raise NotGitb("the body is not a SOAP envelope")
    if namespace(root.tag) == SOAP12:
        raise NotGitb("SOAP 1.2 is not supported: send a SOAP 1.1 envelope", version_mismatch=True)
    if namespace(root.tag) != SOAP11:
        raise NotGitb("the body is not a SOAP 1.1 envelope")
    header = root.find(f"{{{SOAP11}}}Header")
    body = root.find(f"{{{SOAP11}}}Body")
    if body is None:
        raise NotGitb("the SOAP envelope has no Body")
    payload = next((child for child in body if isinstance(child.tag, str)), None)
    if payload is None:
        raise NotGitb("the SOAP Body is empty")
    operation = OPERATIONS.get(local(payload.tag)) if namespace(payload.tag) == VS else None
    if operation is None:
        raise NotGitb(
            f"{local(payload.tag) or 'this'} is not an operation of the GITB validation service "
            "(getModuleDefinition, validate)"
        )
    message_id, wsa_ns = _addressing(header)
    return SoapRequest(operation, payload, message_id, wsa_ns)


def _addressing(header: etree._Element | None) -> tuple[str | None, str | None]:
    if header is None:
        return None, None
    message_id = None
    wsa_ns = None
    for child in header:
        ns = namespace(child.tag)
        if ns in WSA_NAMESPACES:
            wsa_ns = ns
            if local(child.tag) == "MessageID" and child.text and child.text.strip():
                message_id = child.text.strip()[:500]
    return message_id, wsa_ns
