"""Folder encryption for PutTransaction: the clear ``folder`` elements of a kmehrmessage are
replaced by one ``Base64EncryptedData`` (``cd`` CD-ENCRYPTION-METHOD ``CMS`` +
``Base64EncryptedValue``), as the KMEHR XSD allows in place of the folders; and back.

What is encrypted: the serialisation of every element after the ``header`` (the folders, and a
trailing ``Signature`` if any), one after the other, each carrying its own namespace
declarations. The cipher itself is injected (``encrypt: bytes -> bytes``), normally CMS
EnvelopedData for the hub's ETK (``encryptor_for_etk``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from lxml import etree

from .envelope import parse_xml
from .messages import KMEHR_NS

Encrypt = Callable[[bytes], bytes]
Decrypt = Callable[[bytes], bytes]
_WRAPPER = "becare-folders"


def _k(local: str) -> str:
    return f"{{{KMEHR_NS}}}{local}"


class EncryptionProblem(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _header(message: etree._Element) -> etree._Element:
    header = message.find(_k("header"))
    if header is None:
        raise EncryptionProblem("kmehrmessage without header")
    return header


def is_encrypted(message: etree._Element) -> bool:
    return (
        message.find(_k("Base64EncryptedData")) is not None or message.find(_k("EncryptedData")) is not None
    )


def encrypt_folders(message: etree._Element, encrypt: Encrypt) -> etree._Element:
    """A copy of ``message`` (either namespace for the root) with its folders encrypted."""
    copy = etree.fromstring(etree.tostring(message))
    if is_encrypted(copy):
        raise EncryptionProblem("kmehrmessage is already encrypted")
    header = _header(copy)
    after = [el for el in header.itersiblings() if isinstance(el.tag, str)]
    if not any(el.tag == _k("folder") for el in after):
        raise EncryptionProblem("kmehrmessage without folder")
    clear = b"".join(etree.tostring(el) for el in after)
    for el in after:
        copy.remove(el)
    data = etree.SubElement(copy, _k("Base64EncryptedData"))
    cd = etree.SubElement(data, _k("cd"), S="CD-ENCRYPTION-METHOD", SV="1.0")
    cd.text = "CMS"
    etree.SubElement(data, _k("Base64EncryptedValue")).text = base64.b64encode(encrypt(clear)).decode("ascii")
    return copy


def decrypt_folders(
    message: etree._Element, decrypt: Decrypt, *, max_bytes: int = 16 * 1024 * 1024
) -> etree._Element:
    """A copy of ``message`` with its ``Base64EncryptedData`` replaced by the clear folders."""
    copy = etree.fromstring(etree.tostring(message))
    data = copy.find(_k("Base64EncryptedData"))
    if data is None:
        raise EncryptionProblem("kmehrmessage holds no Base64EncryptedData")
    method = (data.findtext(_k("cd")) or "").strip()
    if method != "CMS":
        raise EncryptionProblem(f"unsupported encryption method {method[:20]!r}")
    try:
        der = base64.b64decode((data.findtext(_k("Base64EncryptedValue")) or "").strip(), validate=True)
    except ValueError:
        raise EncryptionProblem("Base64EncryptedValue is not base64") from None
    clear = decrypt(der)
    wrapped = (f'<{_WRAPPER} xmlns="{KMEHR_NS}">').encode() + clear + f"</{_WRAPPER}>".encode()
    try:
        holder = parse_xml(wrapped, max_bytes=max_bytes, what="decrypted folder")
    except Exception as exc:
        raise EncryptionProblem(getattr(exc, "reason", "decrypted content is not XML")) from None
    copy.remove(data)
    for el in list(holder):
        if isinstance(el.tag, str):
            copy.append(el)
    return etree.fromstring(etree.tostring(copy))


def encryptor_for_etk(etk_client: Any, identifier: Any) -> Encrypt:
    """``encrypt_for_hub`` for ``HubClient``: CMS EnvelopedData for the ETK the depot returns for
    ``identifier`` (looked up at each call: the ETK client caches it and notices renewals)."""
    from adapter.ehealth import cms

    def encrypt(data: bytes) -> bytes:
        return cms.encrypt(data, etk_client.certificate(identifier))

    return encrypt

