"""The bundles the validation benchmarks measure, built from the samples, the same on every run.

- ``care``: the Flemish remunerated care-coordination sample (25 entries), as it is on disk.
- ``replicated(n)``: its entries ``n`` times over, every ``urn:uuid`` renamed per copy, so that
  references resolve inside each copy and no two entries share a fullUrl (a bundle that repeats
  the same fullUrl is a different workload: every copy would be a duplicate error).
- ``narrative=False`` drops every resource's ``text``: each resource then gets a dom-6 warning,
  so every resource needs a source position (the worst case for locating issues).

Bytes are what users send: JSON indented by 2 (as the samples are), XML as ``to_xml`` writes it.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CARE_BUNDLE = ROOT / "samples" / "valid" / "flanders-care-coordination.json"
_UUID = re.compile(r"urn:uuid:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
_NS = uuid.UUID("6f1c1d1e-8a54-4c36-9a5c-9a7e0c1d2b3f")


def care_bundle() -> dict[str, Any]:
    """The realistic care bundle: the Flemish remunerated care-coordination situation."""
    data = json.loads(CARE_BUNDLE.read_text(encoding="utf-8"))
    if len(data.get("entry", [])) < 20:
        raise SystemExit(f"{CARE_BUNDLE} has fewer than 20 entries")
    return data


def _without_narrative(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _without_narrative(v) for k, v in node.items() if not (k == "text" and isinstance(v, dict))}
        return out
    if isinstance(node, list):
        return [_without_narrative(v) for v in node]
    return node


def replicated(copies: int, *, narrative: bool = True) -> dict[str, Any]:
    """The care bundle's entries ``copies`` times (25 x copies entries), uuids renamed per copy."""
    base = care_bundle()
    entries_text = json.dumps(base["entry"], ensure_ascii=False)
    entries: list[Any] = []
    for k in range(copies):
        renamed = _UUID.sub(lambda m, k=k: f"urn:uuid:{uuid.uuid5(_NS, f'{k}:{m.group(1)}')}", entries_text)
        entries.extend(json.loads(renamed))
    bundle = dict(base)
    bundle["entry"] = entries
    return bundle if narrative else _without_narrative(bundle)


def json_bytes(bundle: dict[str, Any]) -> bytes:
    return json.dumps(bundle, indent=2, ensure_ascii=False).encode("utf-8")


def xml_bytes(bundle: dict[str, Any]) -> bytes:
    from adapter.fhirio import parse, to_xml
    from adapter.fhirio.errors import FILE_LIMITS

    # through the JSON reader, so decimals are Decimals as the XML writer expects
    return to_xml(parse(json_bytes(bundle), "json", limits=FILE_LIMITS).resource).encode("utf-8")


def care_bytes() -> bytes:
    """The sample exactly as stored on disk."""
    return CARE_BUNDLE.read_bytes()
