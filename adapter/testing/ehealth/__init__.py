"""Test doubles for the eHealth platform: a generated PKI (``pki``), the STS (``sts.MockSts``)
and the ETK depot (``etk.MockEtkDepot``). The doubles are pure request handlers,
``handle(body, headers) -> (status, body)``: wrap them in ``httpx.MockTransport`` or serve them
from one loopback server."""
