"""Test doubles for the service tests (no tests here; the name keeps it with them): a small
validator with real parsing (adapter.fhirio) and predictable findings, and a recording registry."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from adapter.fhirio import parse
from adapter.validation.api import Report, ValidationOptions
from adapter.validation.issues import Issue

SSIN_SYSTEM = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"


class FakeValidator:
    """Parses for real (so size, depth and XML hardening are fhirio's), judges simply:
    a Bundle without ``type`` is an error; every message names the language and region."""

    def __init__(self, *, delay: float = 0.0, fail: Exception | None = None) -> None:
        self.delay = delay
        self.fail = fail
        self.calls: list[tuple[dict[str, Any], ValidationOptions]] = []
        self.lock = threading.Lock()

    def validate_bytes(self, data: bytes, content_type: str | None, options: ValidationOptions) -> Report:
        fmt = None
        if content_type and "xml" in content_type:
            fmt = "xml"
        elif content_type and "json" in content_type:
            fmt = "json"
        doc = parse(data, fmt)
        return self.validate(doc.resource, options)

    def validate(self, resource: Any, options: ValidationOptions) -> Report:
        if self.fail is not None:
            raise self.fail
        if self.delay:
            time.sleep(self.delay)
        resource = getattr(resource, "resource", resource)
        with self.lock:
            self.calls.append((resource, options))
        issues: list[Issue] = []
        if resource.get("resourceType") == "Bundle" and "type" not in resource:
            message = f"[{options.lang}] Bundle.type is required"
            issues.append(Issue("error", "required", "Bundle.type", message))
        issues.append(Issue("information", "informational", "", f"lang={options.lang} region={options.region}"
                            f" profiles={','.join(options.profiles)}"))
        return Report(issues=issues, resource=resource, region=options.region, rulebook_version="1")


@dataclass
class RecordingRegistry:
    recorded: list[tuple[dict[str, Any], str | None]] = field(default_factory=list)

    def record(self, bundle: dict[str, Any], *, source: str | None = None, exclusive: bool = False) -> Any:
        self.recorded.append((bundle, source))
        return SimpleNamespace(stored=1, conflicts=())


def bundle(identifier: str = "b-1", *, valid: bool = True, ssin: str = "85073003328",
           family: str = "Peeters") -> dict[str, Any]:
    b: dict[str, Any] = {
        "resourceType": "Bundle",
        "identifier": {"system": "urn:test", "value": identifier},
        "entry": [
            {
                "fullUrl": "urn:uuid:0d7b6a3e-2f0e-4a43-9e4d-6d3f1e2b9a01",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": SSIN_SYSTEM, "value": ssin}],
                    "name": [{"family": family, "given": ["Jan"]}],
                    "address": [{"postalCode": "9000"}],
                },
                "request": {"method": "POST", "url": "Patient"},
            }
        ],
    }
    if valid:
        b["type"] = "transaction"
    return b
