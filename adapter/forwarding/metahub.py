"""The metahub step: which hubs hold data for a person, and is their sharing consent active.

The real eHealth metahub speaks KMEHR/SOAP; becare talks to a configurable locator with a small
JSON contract so a site can put its own bridge in front of it:

    POST {url}   {"ssin": "85073003328"}
    200          {"hubs": ["cozo", "rsw"], "consentActive": true}

No documents pass through the metahub; only the SSIN is sent, and it is never logged.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from adapter.outbox.masking import mask

from .destinations import make_client
from .settings import MetahubConfig


class MetahubError(Exception):
    """The locator could not answer; routing cannot decide (the caller should retry later)."""


@dataclass(frozen=True, slots=True)
class LocatorAnswer:
    hubs: tuple[str, ...]
    consent_active: bool


def parse_answer(body: object) -> LocatorAnswer:
    if not isinstance(body, dict):
        raise MetahubError("metahub answer is not a JSON object")
    hubs = body.get("hubs", [])
    consent = body.get("consentActive")
    if not isinstance(hubs, list) or not all(isinstance(h, str) for h in hubs):
        raise MetahubError("metahub answer: 'hubs' must be a list of hub ids")
    if not isinstance(consent, bool):
        raise MetahubError("metahub answer: 'consentActive' must be true or false")
    return LocatorAnswer(tuple(hubs), consent)


class MetahubLocator:
    def __init__(self, config: MetahubConfig, *, client: httpx.Client | None = None) -> None:
        self.config = config
        self.client = client or make_client(config.auth, config.timeout, url=config.url)

    def locate(self, ssin: str) -> LocatorAnswer:
        try:
            response = self.client.post(self.config.url, json={"ssin": ssin})
        except httpx.HTTPError as exc:
            raise MetahubError(mask(f"metahub unreachable ({type(exc).__name__})")) from None
        if response.status_code != 200:
            raise MetahubError(f"metahub answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise MetahubError("metahub answer is not JSON") from None
        return parse_answer(body)

    def close(self) -> None:
        self.client.close()
