"""The ``kmehr-hub`` destination: a Belgian hub, reached as the hubs work today.

One delivery = one PutTransaction of a KMEHR ``careplan`` message (one transaction per CarePlan)
over SOAP hubservices v3, with the organisation's eHealth SAML token and WS-Security signature,
the payload encrypted for the hub's ETK. Steps, each a separate object so each can be tested:

1. the person's INSS (no INSS: ``blocked``, a hub files everything under it);
2. GetPatientConsent and GetTherapeuticLink at the hub: either missing means ``blocked`` with
   that reason, and nothing is put (an operator replays it with ``becare outbox retry`` once the
   consent or link exists);
3. exactly once: the KMEHR transaction id is derived from the delivery id, so from the second
   attempt on (the first may have reached the hub before its reply was lost, or the process was
   killed between the put and its reply) GetTransactionList is asked first, and a transaction
   already there ends the delivery as ``delivered`` without a second put. The attempt number is
   the delivery's lifetime count (the worker counts recorded attempts), so a dead letter replayed
   with ``becare outbox retry``, in this process or after a restart, is looked up too;
4. write, sign, encrypt, put; the hub's answer is classified like any other destination's.

The certificate is checked for expiry before every delivery (it is loaded once): one that expires
while the service runs blocks its deliveries, as an expired one at start would.

The STS token and the ETK are shared by every hub destination of the process (one cache each).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import httpx

from adapter.outbox.masking import mask

from .destinations import DeliveryResult, make_transport, ssl_verify
from .region import person_ssin
from .settings import DestinationConfig, EHealthConfig, PartyConfig

log = logging.getLogger("becare.forwarding.kmehr")

TRANSACTION_PREFIX = "becare-"


def transaction_base(delivery_id: str) -> str:
    """The LOCAL transaction id of a delivery: stable over every attempt of that delivery."""
    return f"{TRANSACTION_PREFIX}{delivery_id}"


def _party(config: PartyConfig | None) -> Any:
    if config is None:
        return None
    from adapter.kmehr import Party

    return Party(nihii=config.nihii, cbe=config.cbe, inss=config.inss, cd=config.cd, name=config.name,
                 firstname=config.firstname, familyname=config.familyname)


@dataclass
class _Identity:
    """The organisation's eHealth identity, loaded once per certificate file and shared."""

    credential: Any
    sts: Any
    etk: Any


_IDENTITIES: dict[tuple[str, str, str, str], _Identity] = {}
_IDENTITY_LOCK = threading.Lock()


def identity(config: EHealthConfig) -> _Identity:
    """Load the certificate (``CredentialError`` with one clear line when it cannot be used) and
    the STS / ETK clients around it, once per process and configuration."""
    from adapter.ehealth.credentials import load_pkcs12
    from adapter.ehealth.etk import EtkClient
    from adapter.ehealth.sts import StsClient

    key = (config.certificate, config.password_env, config.sts_url, config.etk_url)
    with _IDENTITY_LOCK:
        found = _IDENTITIES.get(key)
        if found is None:
            credential = load_pkcs12(config.certificate, password_env=config.password_env)
            sts = StsClient(config.sts_url, credential, lifetime=config.token_lifetime,
                            timeout=config.timeout, transport=make_transport(config.auth, config.sts_url))
            etk = EtkClient(config.etk_url, timeout=config.timeout,
                            transport=make_transport(config.auth, config.etk_url))
            found = _IDENTITIES[key] = _Identity(credential, sts, etk)
        return found


def check_identity(config: EHealthConfig) -> None:
    """At start: the certificate opens and is valid now (raises ``EHealthError``)."""
    identity(config)


class KmehrHubDestination:
    kind = "kmehr-hub"
    reads_bundle = True
    wants_attempt = True

    def __init__(self, name: str, config: DestinationConfig, *, transport: httpx.BaseTransport | None = None,
                 ehealth: _Identity | None = None) -> None:
        assert config.hub is not None and config.ehealth is not None  # checked by DestinationConfig
        self.name = name
        self.config = config
        self.hub = config.hub
        self.ehealth_config = config.ehealth
        self._transport = transport
        self._ehealth = ehealth
        self._client: Any = None
        self._identity: _Identity | None = None
        self._lock = threading.Lock()

    @property
    def attempt_timeout(self) -> float:
        """How long one attempt may take: consent, link, lookup and put at the hub, plus the STS
        and the ETK depot. The worker's lease must outlive it, or another worker could take the
        delivery over while its put is still on the wire."""
        return 4 * self.config.timeout + 2 * self.ehealth_config.timeout

    # -- assembly ------------------------------------------------------------------------------
    def _sender(self) -> Any:
        from adapter.kmehr import Sender

        e = self.ehealth_config
        return Sender(organisation=_party(e.organisation), professional=_party(e.professional),
                      software_name=e.software_name)

    def client(self) -> Any:
        """The hub client, built on first use: a certificate problem then becomes this delivery's
        status rather than a crash of the worker (``becare serve`` checks it at start too).

        The client gets the TLS context, not a transport: it keeps reads on pooled connections
        and sends each PutTransaction on a fresh one, so no layer below can resend a put whose
        reply was lost."""
        with self._lock:
            if self._client is None:
                from adapter.ehealth.etk import EtkIdentifier
                from adapter.hubservices import HubClient, SamlSecurity
                from adapter.hubservices.encryption import encryptor_for_etk

                ident = self._identity = self._ehealth or identity(self.ehealth_config)
                etk_id = EtkIdentifier(self.hub.etk.type, self.hub.etk.value, self.hub.etk.application_id)
                auth = self.config.auth
                context = ssl_verify(auth) if auth.ca_bundle or auth.client_cert or not auth.verify else None
                self._client = HubClient(
                    self.config.url, hub_version=self.hub.version,
                    security=SamlSecurity(ident.sts, ident.credential),
                    author=self._sender(), encrypt_for_hub=encryptor_for_etk(ident.etk, etk_id),
                    transport=self._transport, ssl_context=context, timeout=self.config.timeout,
                    name=self.hub.name,
                )
            return self._client

    # -- delivery ------------------------------------------------------------------------------
    def deliver(self, bundle: dict[str, Any], *, idempotency_key: str, delivery_id: str,
                raw: str | None = None, attempt: int = 1) -> DeliveryResult:
        from adapter.ehealth.errors import CredentialError, EHealthError
        from adapter.hubservices import HubError
        from adapter.kmehr import KmehrError

        inss = person_ssin(bundle)
        if inss is None:
            return DeliveryResult("blocked", error=f"{self.name}: the bundle has no INSS for the person; "
                                  "a hub files every transaction under the patient's INSS")
        try:
            return self._deliver(bundle, inss, delivery_id, attempt)
        except KmehrError as exc:
            return DeliveryResult("dead", error=mask(f"{self.name}: cannot write KMEHR: {exc}"))
        except HubError as exc:
            return self._hub_failure(exc)
        except CredentialError as exc:
            # the organisation's certificate (expired, password changed): no retry can help until
            # an operator replaces it; blocked keeps the bundle for `becare outbox retry`
            return DeliveryResult("blocked", error=mask(f"{self.name}: eHealth certificate: {exc.reason}"))
        except EHealthError as exc:
            retryable = bool(getattr(exc, "retryable", False))  # STS / ETK outages say they are
            return DeliveryResult("retry" if retryable else "dead",
                                  error=mask(f"{self.name}: eHealth: {exc.reason}"))

    def _deliver(self, bundle: dict[str, Any], inss: str, delivery_id: str, attempt: int) -> DeliveryResult:
        from adapter.ehealth.credentials import check_validity
        from adapter.ehealth.errors import CredentialError
        from adapter.hubservices import BECARE_TRANSACTION_SL
        from adapter.kmehr import schemas, to_kmehr, transaction_ids

        client = self.client()
        credential = self._identity.credential if self._identity is not None else None
        if credential is not None:  # loaded once at start: it may have expired since
            check_validity(credential.certificate, now=None, what=f"{credential.source}: certificate",
                           error=CredentialError)
        if self.hub.check_consent:
            consent = client.get_patient_consent(inss)
            if not consent.active:
                return DeliveryResult("blocked", error=f"{self.name}: the patient has no active consent "
                                      f"at hub {self.hub.name}; nothing was put")
        if self.hub.check_therapeutic_link:
            organisation = _party(self.ehealth_config.organisation)
            kinds = (self.hub.therapeutic_link_type,) if self.hub.therapeutic_link_type else ()
            if not client.get_therapeutic_link(inss, organisation, link_types=kinds).active:
                return DeliveryResult("blocked", error=f"{self.name}: no active therapeutic link between the "
                                      f"patient and {self.ehealth_config.organisation.name or 'the sender'} "
                                      f"at hub {self.hub.name}; nothing was put")
        base = transaction_base(delivery_id)
        message = to_kmehr(bundle, version=schemas.KMEHR_FOR_HUB[self.hub.version], lang=self.hub.lang,
                           sender=self._sender(), recipient=self._recipient(), transaction_id=base,
                           attach_bundle=self.hub.attach_bundle)
        if attempt > 1:
            wanted = set(transaction_ids(message))
            listed = client.get_transaction_list(inss, cd=None)  # one listing for every careplan
            held = {i.value for tr in listed for i in tr.ids
                    if i.s == "LOCAL" and i.sl == BECARE_TRANSACTION_SL and i.value in wanted}
            if held and wanted <= held:
                return DeliveryResult("delivered", error="already at the hub (found by GetTransactionList)")
            if wanted & held:  # a half-stored message is a hub fault; never put the rest twice
                return DeliveryResult("dead", error=f"{self.name}: the hub holds only part of this "
                                      "message's transactions; an operator must check it")
        client.put_transaction(message, patient_inss=inss)
        return DeliveryResult("delivered", http_status=200)

    def _recipient(self) -> Any:
        from adapter.kmehr import Party

        return Party(nihii=self.hub.id, cd="hub", name=self.hub.name)

    def _hub_failure(self, exc: Any) -> DeliveryResult:
        reason = mask(f"{self.name}: {exc.reason}")
        status = getattr(exc, "http_status", None)
        if exc.kind == "unknown-outcome":
            # the hub may hold it: the next attempt asks GetTransactionList before any put
            return DeliveryResult("retry", http_status=status, error=reason + " (outcome unknown: "
                                  "the next attempt looks the transaction up first)")
        outcome = "retry" if exc.retryable else "dead"
        return DeliveryResult(outcome, http_status=status, error=reason,
                              retry_after=getattr(exc, "retry_after", None))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

