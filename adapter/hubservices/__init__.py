"""hubservices v3: the SOAP 1.1 interface of the Belgian hubs (KMEHR transactions, consent,
therapeutic links).

- ``messages``: pure builders of request bodies (checked against the vendored hub XSDs);
- ``envelope``: SOAP 1.1 wrap / hardened parse / faults;
- ``replies``: acknowledge and payload parsing, ``HubError`` (typed outcomes, OperationOutcome);
- ``encryption``: a kmehrmessage's folders replaced by ``Base64EncryptedData`` (CMS) and back;
- ``client``: ``HubClient`` with injected security (``RequestSecurity``) and transport.

The mock hub that checks all this lives in ``adapter.testing.ehealth.hub``.
"""

from .client import HubClient, NoSecurity, RequestSecurity, SamlSecurity
from .messages import BECARE_TRANSACTION_SL, OPERATIONS, KmehrId, soap_action
from .replies import (
    Acknowledge,
    Consent,
    HubError,
    HubIssue,
    InvalidRequest,
    PutResult,
    TherapeuticLink,
    TherapeuticLinks,
    TransactionSummary,
)

__all__ = [
    "BECARE_TRANSACTION_SL",
    "OPERATIONS",
    "Acknowledge",
    "Consent",
    "HubClient",
    "HubError",
    "HubIssue",
    "InvalidRequest",
    "KmehrId",
    "NoSecurity",
    "PutResult",
    "RequestSecurity",
    "SamlSecurity",
    "TherapeuticLink",
    "TherapeuticLinks",
    "TransactionSummary",
    "soap_action",
]
