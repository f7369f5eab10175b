"""The CapabilityStatement served at ``GET /fhir/metadata``: what this server does, for clients
that discover FHIR servers the standard way."""

from __future__ import annotations

from typing import Any

from adapter import __version__

BASE = "https://becare.dev/fhir"
PROFILE_IDS = (
    "becare-episodeofcare", "becare-careteam", "becare-careplan", "becare-goal", "becare-task",
    "becare-consent", "becare-bundle",
)  # fmt: skip
_PROFILE_TYPES = {
    "becare-episodeofcare": "EpisodeOfCare", "becare-careteam": "CareTeam", "becare-careplan": "CarePlan",
    "becare-goal": "Goal", "becare-task": "Task", "becare-consent": "Consent", "becare-bundle": "Bundle",
}  # fmt: skip
VALIDATE_OP = "http://hl7.org/fhir/OperationDefinition/Resource-validate"
MAP_OP = f"{BASE}/OperationDefinition/map"


def profile_url(profile_id: str) -> str:
    return f"{BASE}/StructureDefinition/{profile_id}"


def capability_statement(base_url: str, date: str) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for pid in PROFILE_IDS:
        rtype = _PROFILE_TYPES[pid]
        entry: dict[str, Any] = {"type": rtype, "supportedProfile": [profile_url(pid)]}
        if rtype == "Bundle":
            entry["interaction"] = [{"code": "create", "documentation": "validate, then accept to forward"}]
            entry["operation"] = [{"name": "validate", "definition": VALIDATE_OP}]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "becare",
        "kind": "instance",
        "software": {"name": "becare", "version": __version__},
        "implementation": {"description": "becare validation and forwarding service", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml", "json", "xml"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Validate FHIR R4 content against the becare profiles and the interfederal "
                "rulebook; accept valid transaction Bundles and forward them durably.",
                "security": {
                    "description": "API key (X-API-Key) or JWT bearer token when bound beyond loopback."
                },
                "resource": resources,
                "interaction": [{"code": "transaction", "documentation": "POST /fhir: accept to forward"}],
                "operation": [
                    {"name": "validate", "definition": VALIDATE_OP},
                    {"name": "map", "definition": MAP_OP,
                     "documentation": "care situation document -> becare transaction Bundle"},
                ],
            }
        ],
    }
