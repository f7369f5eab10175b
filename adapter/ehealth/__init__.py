"""eHealth platform security for talking to Belgian hubs (hubservices v3).

- ``credentials``: the organisation's eHealth certificate and key from a PKCS#12 file;
- ``sts``: a SAML 1.1 holder-of-key token from the eHealth STS (WS-Trust Issue), cached;
- ``etk``: the recipient's encryption token (ETK) from the ETK depot, cached;
- ``cms``: CMS EnvelopedData encryption of a payload for an ETK, and decryption;
- ``wssecurity``: WS-Security on a SOAP 1.1 envelope (Timestamp + SAML assertion + XML signature
  over Body and Timestamp) and its verification as a hub does it.

The test doubles of the STS and the ETK depot live in ``adapter.testing.ehealth``.
Importing this package is cheap: only the errors are loaded here.
"""

from adapter.ehealth.errors import CredentialError, EHealthError, EtkError, SecurityError, StsError

__all__ = ["CredentialError", "EHealthError", "EtkError", "SecurityError", "StsError"]
