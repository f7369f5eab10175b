"""Provenance in every report (issue 14): validator and rulebook versions, packages, profiles applied
per resource, region, date, duration; in the json and junit outputs of ``becare validate`` and in
the OperationOutcomes of the HTTP service (JSON and XML)."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from fastapi.testclient import TestClient

from adapter import __version__
from adapter.conformance import default_store
from adapter.fhirio import parse, parse_file
from adapter.validation import Validator
from adapter.validation.api import ValidationOptions
from adapter.validation.provenance import PROVENANCE_URL, VALIDATOR_VERSION_URL, provenance_extensions

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "valid" / "flanders-care-coordination.json"
BREAKS = ROOT / "samples" / "rules" / "IC-TEAM-1" / "breaks.json"
BE_PATIENT = "https://www.ehealth.fgov.be/standards/fhir/core/StructureDefinition/be-patient"
KEYS = {"validator", "rulebook", "packages", "profiles", "canonicals", "region", "date", "duration_ms"}


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator()


def _subs(extension: dict[str, Any], name: str) -> list[Any]:
    """Values (or complex bodies) of the sub-extensions called ``name``."""
    out = []
    for sub in extension.get("extension", ()):
        if sub["url"] == name:
            values = [v for k, v in sub.items() if k.startswith("value")]
            out.append(values[0] if values else sub["extension"])
    return out


def _provenance_ext(oo: dict[str, Any]) -> dict[str, Any]:
    (ext,) = [e for e in oo.get("extension", ()) if e["url"] == PROVENANCE_URL]
    return ext


# -- the Report -------------------------------------------------------------------------------------
def test_report_provenance_says_what_judged_it(validator: Validator) -> None:
    day = dt.date(2025, 6, 1)
    report = validator.validate(parse_file(SAMPLE), ValidationOptions(today=day))
    prov = report.provenance
    assert set(prov) == KEYS
    assert prov["validator"] == {"name": "becare", "version": __version__}
    assert prov["rulebook"] == {"version": report.rulebook_version} and report.rulebook_version
    packages = {p["id"]: p["version"] for p in prov["packages"]}
    assert packages["hl7.fhir.r4.core"] == "4.0.1"
    assert packages["hl7.fhir.be.core"] == "2.1.2" and packages["hl7.fhir.be.patient-care"] == "1.1.0"
    assert prov["region"] == "flanders" == report.region
    assert prov["date"] == "2025-06-01"
    assert isinstance(prov["duration_ms"], float) and prov["duration_ms"] > 0
    assert prov["canonicals"] == []
    profiles = prov["profiles"]
    resource = report.resource
    assert resource is not None
    assert set(profiles) == {"Bundle"} | {
        f"Bundle.entry[{i}].resource" for i in range(len(resource["entry"]))
    }
    assert profiles["Bundle"][0] == "http://hl7.org/fhir/StructureDefinition/Bundle|4.0.1"
    patient = next(i for i, e in enumerate(resource["entry"]) if e["resource"]["resourceType"] == "Patient")
    applied = profiles[f"Bundle.entry[{patient}].resource"]
    assert applied[0] == "http://hl7.org/fhir/StructureDefinition/Patient|4.0.1"
    assert any(u.startswith(BE_PATIENT + "|") for u in applied), applied


def test_no_rulebook_no_rulebook_key_and_extra_profiles_are_listed(validator: Validator) -> None:
    patient = {"resourceType": "Patient", "id": "p"}
    report = validator.validate(patient, ValidationOptions(rulebook=False, profiles=(BE_PATIENT,)))
    assert "rulebook" not in report.provenance
    assert report.provenance["region"] is None
    assert report.provenance["date"] == dt.date.today().isoformat()
    (applied,) = report.provenance["profiles"].values()
    assert applied[0].startswith("http://hl7.org/fhir/StructureDefinition/Patient")
    assert applied[1].startswith(BE_PATIENT)


def _package(tmp_path: Path, name: str, version: str) -> Path:
    sd = {
        "resourceType": "StructureDefinition",
        "url": f"http://example.org/{name}/StructureDefinition/p",
        "name": "P",
        "status": "active",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "derivation": "constraint",
        "differential": {"element": [{"id": "Patient", "path": "Patient"}]},
    }
    path = tmp_path / f"{name}.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for member, content in (
            ("package/package.json", {"name": name, "version": version}),
            ("package/StructureDefinition-p.json", sd),
        ):
            data = json.dumps(content).encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_ig_packages_are_listed_by_package_json_and_loose_files_by_name(tmp_path: Path) -> None:
    store = default_store().overlay()
    store.load(_package(tmp_path, "example.fhir.ig", "0.3.0"))
    loose = tmp_path / "ValueSet-x.json"
    loose.write_text(
        json.dumps({"resourceType": "ValueSet", "url": "http://example.org/vs", "status": "active"})
    )
    store.load(loose)
    report = Validator(store).validate({"resourceType": "Basic", "code": {"text": "x"}}, ValidationOptions())
    packages = report.provenance["packages"]
    assert packages[-2:] == [
        {"id": "example.fhir.ig", "version": "0.3.0"},
        {"id": "ValueSet-x.json", "version": None},
    ]
    assert packages[0] == {"id": "hl7.fhir.r4.core", "version": "4.0.1"}
    assert default_store().loaded_packages() == [(p["id"], p["version"]) for p in packages[:-2]], (
        "the overlay never adds to the shared default store"
    )


def test_provenance_cost_is_small_next_to_the_validation(validator: Validator) -> None:
    """Building provenance is a few dicts: time it against the validation it describes."""
    import time

    from adapter.validation.provenance import build, packages_of

    report = validator.validate(parse_file(SAMPLE), ValidationOptions())
    started = time.perf_counter()
    for _ in range(100):
        build(
            rulebook_version="1",
            packages=packages_of(validator.store),
            profiles=report.provenance["profiles"],
            region="flanders",
            date=dt.date.today(),
            duration_ms=1.0,
        )
    per_report_ms = (time.perf_counter() - started) * 1000 / 100
    assert per_report_ms < report.provenance["duration_ms"] / 100, (
        per_report_ms,
        report.provenance["duration_ms"],
    )


def test_extensions_render_whatever_is_there() -> None:
    assert provenance_extensions({}) == []
    assert provenance_extensions({"validator": "not a mapping", "packages": "x", "profiles": [1]}) == []
    (version, ext) = provenance_extensions(
        {
            "validator": {"name": "becare", "version": "9"},
            "duration_ms": 2.5,
            "canonicals": [{"declared": "a", "applied": "b", "at": "Patient"}],
        }
    )
    assert version == {"url": VALIDATOR_VERSION_URL, "valueString": "becare 9"}
    assert _subs(ext, "duration") == [
        {"value": 2.5, "unit": "ms", "system": "http://unitsofmeasure.org", "code": "ms"}
    ]
    (canonical,) = _subs(ext, "canonical")
    assert [c["url"] for c in canonical] == ["declared", "applied", "at"]


# -- becare validate: json and junit ---------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapter.cli.main", "validate", "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_cli_json_carries_provenance_next_to_the_file_name() -> None:
    one = _cli(str(SAMPLE), "--format", "json", "--today", "2025-06-01")
    assert one.returncode == 0, one.stderr
    oo = json.loads(one.stdout)
    urls = [e["url"] for e in oo["extension"]]
    assert urls == [
        "http://hl7.org/fhir/StructureDefinition/operationoutcome-file",
        VALIDATOR_VERSION_URL,
        PROVENANCE_URL,
    ]
    ext = _provenance_ext(oo)
    assert _subs(ext, "validatorVersion") == [__version__] and _subs(ext, "rulebookVersion") == ["1"]
    assert "hl7.fhir.r4.core#4.0.1" in _subs(ext, "package")
    assert _subs(ext, "region") == ["flanders"] and _subs(ext, "date") == ["2025-06-01"]
    profiles = {p[0]["valueString"]: [s["valueCanonical"] for s in p[1:]] for p in _subs(ext, "profile")}
    assert profiles["Bundle"][0].startswith("http://hl7.org/fhir/StructureDefinition/Bundle")

    many = _cli(str(SAMPLE), str(BREAKS), "--format", "json")
    assert many.returncode == 1
    entries = [e["resource"] for e in json.loads(many.stdout)["entry"]]
    assert len(entries) == 2 and all(_provenance_ext(oo) for oo in entries)


def test_cli_junit_has_suite_and_testcase_properties() -> None:
    run = _cli(str(SAMPLE), str(BREAKS), "--format", "junit", "--today", "2025-06-01")
    assert run.returncode == 1, run.stderr
    suite = ElementTree.fromstring(run.stdout).find("testsuite")
    assert suite is not None
    shared = [(p.get("name"), p.get("value")) for p in suite.findall("properties/property")]
    assert ("becare.validator", f"becare {__version__}") in shared
    assert ("becare.date", "2025-06-01") in shared
    assert ("becare.package", "hl7.fhir.be.core#2.1.2") in shared
    assert next(iter(suite)).tag == "properties", "properties come first in a testsuite"
    cases = suite.findall("testcase")
    assert len(cases) == 2
    for case in cases:
        assert next(iter(case)).tag == "properties"
        own = dict((p.get("name"), p.get("value")) for p in case.findall("properties/property"))
        assert own["becare.region"] == "flanders" and own["becare.rulebook"] == "1"
        assert float(own["becare.duration_ms"]) > 0
        profiles = [
            p.get("value") for p in case.findall("properties/property") if p.get("name") == "becare.profile"
        ]
        assert any(v.startswith("Bundle = http://hl7.org/fhir/StructureDefinition/Bundle") for v in profiles)
        assert "becare.validator" not in own


# -- the HTTP service ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(validator: Validator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from adapter.outbox.store import Outbox
    from adapter.service.app import create_app
    from adapter.service.config import RateLimit, ServiceConfig

    outbox = Outbox(f"sqlite:///{tmp_path_factory.mktemp('prov') / 'outbox.db'}")
    app = create_app(
        ServiceConfig(rate_limit=RateLimit(per_second=0, burst=1)), validator=validator, outbox=outbox
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _post(
    client: TestClient,
    path: str,
    body: bytes,
    ctype: str = "application/fhir+json",
    accept: str = "application/fhir+json",
) -> Any:
    return client.post(path, content=body, headers={"Content-Type": ctype, "Accept": accept})


def test_validate_operation_outcome_carries_provenance_in_json_and_xml(client: TestClient) -> None:
    r = _post(client, "/fhir/$validate?today=2025-06-01", SAMPLE.read_bytes())
    assert r.status_code == 200, r.text[:300]
    ext = _provenance_ext(r.json())
    assert _subs(ext, "date") == ["2025-06-01"] and _subs(ext, "region") == ["flanders"]
    assert [e for e in r.json()["extension"] if e["url"] == VALIDATOR_VERSION_URL]
    x = _post(client, "/fhir/$validate", SAMPLE.read_bytes(), accept="application/fhir+xml")
    assert x.status_code == 200 and x.headers["content-type"].startswith("application/fhir+xml")
    oo = parse(x.content, "xml").resource
    ext = _provenance_ext(oo)
    assert "hl7.fhir.r4.core#4.0.1" in _subs(ext, "package")
    (duration,) = _subs(ext, "duration")
    assert duration["code"] == "ms" and float(duration["value"]) > 0


def test_rejected_submission_carries_provenance(client: TestClient) -> None:
    r = _post(client, "/fhir", BREAKS.read_bytes())
    assert r.status_code == 422, r.text[:300]
    ext = _provenance_ext(r.json())
    assert _subs(ext, "rulebookVersion") == ["1"]
    assert any(p[0]["valueString"] == "Bundle" for p in _subs(ext, "profile"))
