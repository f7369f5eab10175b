"""Classes of validator behaviour taken from the FHIR R4 specification, each on its own profiles
(tests/data/classes, packed into a FHIR package here) and on instances from the spec's text:

1. canonicals that are not URLs (``urn:oid:``, ``urn:uuid:``) and ``url|version`` resolve
   wherever a canonical is used (meta.profile, --profile, baseDefinition, type profile,
   targetProfile, extension url, binding, CodeSystem);
2. a targetProfile that is not loaded is one error (it cannot be checked), never a resource type;
3. Bundle.entry.fullUrl has to agree with the resource's type and id only when it is a RESTful URL;
4. bdl-7's exceptions: one fullUrl per meta.versionId, and the same type/id on different servers;
8. packages and folders given to --ig are read despite junk members (AppleDouble ``._*`` files,
   ``package/other``, ``package/example``, files that are not FHIR);
9. every entry of a message Bundle has a fullUrl.

Valid instances must pass, invalid ones fail with a message that says why, as JSON and as XML.
"""

from __future__ import annotations

import copy
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from adapter.cli.main import main
from adapter.conformance import ConformanceError, ConformanceStore, default_store
from adapter.fhirio import parse, to_xml
from adapter.validation.api import ValidationOptions
from adapter.validation.engine import Validator

DATA = Path(__file__).parent / "data" / "classes" / "profiles"
OID = "urn:oid:1.3.6.1.4.1.21367.100.1"
UUID = "urn:uuid:2f3c9d0e-6a51-4b1e-9c8f-0d4a7e5b1c23"
ADDR = "urn:oid:1.3.6.1.4.1.21367.100.2"
EXT = "urn:oid:1.3.6.1.4.1.21367.100.3"
ORG = "urn:oid:1.3.6.1.4.1.21367.100.4"
VS = "urn:oid:1.3.6.1.4.1.21367.100.5"
CS = "urn:uuid:8a7d3c1b-5e2f-4d6a-9b0c-1e2f3a4b5c6d"
KP = "http://example.org/fhir/StructureDefinition/known-patient"
USCORE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"
OBS_USCORE = "http://example.org/fhir/StructureDefinition/obs-uscore-subject"
OBS_KNOWN = "http://example.org/fhir/StructureDefinition/obs-known-subject"
OBS_CORE = "http://example.org/fhir/StructureDefinition/obs-core-subject"

# what published packages carry besides their definitions
JUNK: dict[str, bytes] = {
    "package/._StructureDefinition-oid-patient-1.json": b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X \x00",
    "package/._package.json": b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X",
    "package/.index.json": b'{"index-version": 1, "files": []}',
    "package/other/spec.internals": b"\x00\x01\x02 binary",
    "package/other/validator.pack.json": b"this is not JSON",
    "package/example/Patient-broken.json": b"{ broken",
    "package/example/ImplementationGuide-no-url.json": b'{"resourceType": "ImplementationGuide"}',
    "package/openapi/Patient.openapi.json": b'{"openapi": "3.0.2"}',
    "package/README.md": b"# not FHIR",
    "package/ValueSet-without-url.json": b'{"resourceType": "ValueSet", "status": "active"}',
    "package/garbage.json": b"\xff\xfe\x00 not text",
    "__MACOSX/package/._ValueSet-oid-1.json": b"\x00\x05\x16\x07",
}


def _definitions() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DATA.glob("*.json"))}


def _package(path: Path, *, junk: bool = True, prefix: str = "") -> Path:
    """A FHIR package: the definitions under package/ (one of them as XML), plus junk."""
    members: dict[str, bytes] = {
        "package/package.json": json.dumps({"name": "example.classes", "version": "1.0.0"}).encode()
    }
    for name, resource in _definitions().items():
        if name == "StructureDefinition-oid-address.json":  # definitions may come as XML too
            members["package/StructureDefinition-oid-address.xml"] = to_xml(resource).encode()
        else:
            members[f"package/{name}"] = json.dumps(resource).encode()
    if junk:
        members.update(JUNK)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _package(tmp_path_factory.mktemp("pkg") / "example.classes-1.0.0.tgz")


@pytest.fixture(scope="module")
def store(package: Path) -> ConformanceStore:
    s = default_store().overlay()
    s.load(package)
    return s


@pytest.fixture(scope="module")
def validator(store: ConformanceStore) -> Validator:
    return Validator(store)


def _issues(
    validator: Validator, resource: dict[str, Any], fmt: str, **kw: Any
) -> list[tuple[str, str, str]]:
    """(severity, expression, message) of a validation of ``resource`` sent as JSON or XML."""
    subject: Any = resource
    if fmt == "xml":
        subject = parse(to_xml(resource), "xml")
    report = validator.validate(subject, ValidationOptions(rulebook=False, **kw))
    return [(i.severity, i.expression or "", i.message) for i in report.issues if "dom-6" not in i.message]


def _errors(validator: Validator, resource: dict[str, Any], fmt: str = "json", **kw: Any) -> list[str]:
    return [f"{e}: {m}" for s, e, m in _issues(validator, resource, fmt, **kw) if s in ("error", "fatal")]


def _warnings(validator: Validator, resource: dict[str, Any], fmt: str = "json", **kw: Any) -> list[str]:
    return [f"{e}: {m}" for s, e, m in _issues(validator, resource, fmt, **kw) if s == "warning"]


FORMATS = pytest.mark.parametrize("fmt", ["json", "xml"])


# ---------------------------------------------------------------- 1. canonicals of every form
@FORMATS
@pytest.mark.parametrize("how", ["meta.profile", "--profile"])
@pytest.mark.parametrize(
    ("canonical", "required"),
    [
        (OID, "Patient.gender"),  # unversioned: the latest version (2.0.0)
        (OID + "|2.0.0", "Patient.gender"),
        (OID + "|1.0.0", "Patient.birthDate"),
        (OID + "|1.0", "Patient.birthDate"),  # partial version: 1.0 matches 1.0.0
        (UUID, "Patient.gender"),
        (KP, "Patient.birthDate"),
        (KP + "|", "Patient.birthDate"),  # an empty version is no version
    ],
)
def test_profiles_resolve_by_any_canonical_form(
    validator: Validator, canonical: str, required: str, how: str, fmt: str
) -> None:
    patient: dict[str, Any] = {"resourceType": "Patient", "id": "p"}
    kw: dict[str, Any] = {}
    if how == "meta.profile":
        patient["meta"] = {"profile": [canonical]}
    else:
        kw["profiles"] = (canonical,)
    found = _errors(validator, patient, fmt, **kw)
    assert f"Patient: {required}: minimum required = 1, but only found 0" in found
    assert not any("Unable to find" in e or "unknown" in e for e in found), found


def test_unknown_version_is_named_with_the_loaded_ones(validator: Validator) -> None:
    # declared in meta.profile: the profile is loaded, that version is not, so the resource cannot
    # be checked against what it claims: an error (fail closed), naming the loaded versions
    patient = {"resourceType": "Patient", "id": "p", "meta": {"profile": [OID + "|3.0.0"]}}
    (error,) = _errors(validator, patient)
    assert error.startswith(f"Patient.meta.profile[0]: Profile reference '{OID}|3.0.0' cannot be checked")
    assert "loaded: 1.0.0, 2.0.0" in error
    assert not any("3.0.0" in w for w in _warnings(validator, patient))
    found = _errors(validator, {"resourceType": "Patient"}, profiles=(OID + "|3.0.0",))
    assert found == [
        f"Patient: Unable to find the profile '{OID}|3.0.0' (version not loaded; loaded: 1.0.0, 2.0.0)"
    ]


def test_store_resolves_every_canonical_form(store: ConformanceStore) -> None:
    assert store.get(OID)["version"] == "2.0.0"  # type: ignore[index]
    assert store.get(OID + "|1.0.0")["version"] == "1.0.0"  # type: ignore[index]
    assert store.get(OID, "1.0.0")["version"] == "1.0.0"  # type: ignore[index]
    assert store.get(OID + "|9") is None
    assert store.versions(OID + "|9") == ["1.0.0", "2.0.0"]
    assert store.structure_definition(UUID)["snapshot"]["element"]  # type: ignore[index]
    assert store.structure_definition(ADDR) is not None  # loaded from the package's XML member
    assert store.value_set(VS + "|1.0.0")["version"] == "1.0.0"  # type: ignore[index]
    assert store.value_set(VS)["version"] == "2.0.0"  # type: ignore[index]
    assert store.code_system(CS)["name"] == "UuidCodes"  # type: ignore[index]
    assert store.code_system(CS + "|1") is not None


def test_value_sets_and_code_systems_by_any_canonical_form(store: ConformanceStore) -> None:
    from adapter.terminology import Terminology

    extra = store.overlay()
    nested = "urn:uuid:5b6c7d8e-9f00-4a1b-8c2d-3e4f5a6b7c8d"
    by_system = "urn:oid:1.3.6.1.4.1.21367.100.6"
    extra.add({"resourceType": "ValueSet", "url": nested, "status": "active",
               "compose": {"include": [{"valueSet": [VS + "|1.0.0"]}]}})  # fmt: skip
    extra.add({"resourceType": "ValueSet", "url": by_system, "status": "active",
               "compose": {"include": [{"system": CS, "version": "1"}]}})  # fmt: skip
    terminology = Terminology(extra)
    assert terminology.validate_code(VS + "|1.0.0", CS, "married").status == "valid"
    assert terminology.validate_code(VS + "|2.0.0", CS, "married").status == "invalid"
    assert terminology.validate_code(VS, CS, "single").status == "valid"  # latest: 2.0.0
    assert terminology.validate_code(nested, CS, "married").status == "valid"
    assert terminology.validate_code(nested, CS, "single").status == "invalid"
    assert terminology.validate_code(by_system, CS, "single").status == "valid"
    result = terminology.validate_code(by_system, CS, "widowed")
    assert result.status == "invalid" and f"not a code of {CS}" in (result.message or "")


def _uuid_patient() -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "http://example.org/fhir/Patient/p",
                "resource": {
                    "resourceType": "Patient",
                    "id": "p",
                    "meta": {"profile": [UUID]},
                    "extension": [{"url": EXT, "valueString": "Nick"}],
                    "gender": "female",
                    "birthDate": "1950-02-28",
                    "address": [{"city": "Gent"}],
                    "maritalStatus": {"coding": [{"system": CS, "code": "single"}]},
                    "managingOrganization": {"reference": "Organization/o"},
                },
            },
            {
                "fullUrl": "http://example.org/fhir/Organization/o",
                "resource": {"resourceType": "Organization", "id": "o", "name": "Huisartsenpraktijk"},
            },
        ],
    }


@FORMATS
def test_non_url_canonicals_in_base_type_target_extension_and_binding(validator: Validator, fmt: str) -> None:
    good = _uuid_patient()
    assert _errors(validator, good, fmt) == []
    bad = copy.deepcopy(good)
    patient, org = bad["entry"][0]["resource"], bad["entry"][1]["resource"]
    del patient["birthDate"]  # baseDefinition urn:oid:...|1.0.0
    del patient["gender"]  # the urn:uuid: profile itself
    patient["extension"][0] = {"url": EXT, "valueInteger": 3}  # extension urn:oid: (valueString only)
    patient["address"][0] = {"line": ["Veldstraat 1"]}  # type profile urn:oid: (city required)
    patient["maritalStatus"]["coding"][0]["code"] = "married"  # in ValueSet|1.0.0, not |2.0.0
    del org["name"]  # target profile urn:oid: (name required)
    org["identifier"] = [{"value": "x"}]
    found = _errors(validator, bad, fmt)
    where = "Bundle.entry[0].resource"
    expected = [
        f"{where}: Patient.birthDate: minimum required = 1, but only found 0",
        f"{where}: Patient.gender: minimum required = 1, but only found 0",
        f"{where}.address[0]: Address.city: minimum required = 1, but only found 0",
        f"{where}.managingOrganization.reference: The referenced Organization does not conform to {ORG}",
    ]
    for message in expected:
        assert message in found, found
    assert any(e.startswith(f"{where}.extension[0]") for e in found), found
    assert any(f"not in the value set {VS}" in e for e in found), found
    assert not any("Unable to" in e or "unknown" in e for e in found), found


def test_cli_uses_a_urn_profile_from_a_package(package: Path, tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "patient.json"
    path.write_text(json.dumps({"resourceType": "Patient", "id": "p", "gender": "male"}), encoding="utf-8")
    common = [
        "validate",
        str(path),
        "--ig",
        str(package),
        "--no-rulebook",
        "--no-progress",
        "--format",
        "json",
    ]
    assert main([*common, "--profile", OID]) == 0
    assert main([*common, "--profile", OID + "|1.0.0"]) == 1
    out = capsys.readouterr().out
    assert "Patient.birthDate: minimum required = 1" in out and "Unable to find" not in out


# ---------------------------------------------------------------- 2. target profiles
def _observation(profile: str, target: dict[str, Any]) -> dict[str, Any]:
    kind = target["resourceType"]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "http://example.org/fhir/Observation/o",
                "resource": {
                    "resourceType": "Observation",
                    "id": "o",
                    "meta": {"profile": [profile]},
                    "status": "final",
                    "code": {"text": "weight"},
                    "subject": {"reference": f"{kind}/t"},
                },
            },
            {"fullUrl": f"http://example.org/fhir/{kind}/t", "resource": {**target, "id": "t"}},
        ],
    }


PATIENT_WITH_BIRTHDATE = {"resourceType": "Patient", "birthDate": "1950-02-28"}
PATIENT_WITHOUT = {"resourceType": "Patient"}
DEVICE = {"resourceType": "Device"}
SUBJECT = "Bundle.entry[0].resource.subject"


@FORMATS
@pytest.mark.parametrize("target", [PATIENT_WITH_BIRTHDATE, PATIENT_WITHOUT, DEVICE])
def test_unknown_target_profile_is_one_error_not_a_type(validator: Validator, target: dict, fmt: str) -> None:
    # fail closed, as the Java validator does: what cannot be checked is one error that says why,
    # the same whatever the target is (no "wrong type" error: the url is not a type name)
    bundle = _observation(OBS_USCORE, target)
    errors = [e for e in _errors(validator, bundle, fmt) if e.startswith(SUBJECT)]
    assert errors == [
        f"{SUBJECT}: The target profile '{USCORE}' is unknown (not loaded), so the referenced resource's "
        "conformance to it cannot be checked, nor its type"
    ]


@FORMATS
def test_known_target_profiles_and_resource_types_are_still_checked(validator: Validator, fmt: str) -> None:
    assert _errors(validator, _observation(OBS_KNOWN, PATIENT_WITH_BIRTHDATE), fmt) == []
    assert _errors(validator, _observation(OBS_KNOWN, PATIENT_WITHOUT), fmt) == [
        f"{SUBJECT}.reference: The referenced Patient does not conform to {KP}"
    ]
    assert _errors(validator, _observation(OBS_KNOWN, DEVICE), fmt) == [
        f"{SUBJECT}.reference: The type 'Device' implied by the reference 'Device/t' is not valid for the "
        "target of this element (must be one of Patient)"
    ]
    assert _errors(validator, _observation(OBS_CORE, PATIENT_WITHOUT), fmt) == []
    assert _errors(validator, _observation(OBS_CORE, DEVICE), fmt) == [
        f"{SUBJECT}.reference: The type 'Device' implied by the reference 'Device/t' is not valid for the "
        "target of this element (must be one of Patient)"
    ]


# ---------------------------------------------------------------- 3. fullUrl and the resource id
def _collection(*entries: tuple[str | None, dict[str, Any]], btype: str = "collection") -> dict[str, Any]:
    out = []
    for full_url, resource in entries:
        entry: dict[str, Any] = {"resource": resource}
        if full_url is not None:
            entry["fullUrl"] = full_url
        out.append(entry)
    return {"resourceType": "Bundle", "type": btype, "entry": out}


def _basic(rid: str | None = "123", **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Basic", "code": {"text": "note"}, **extra}
    if rid is not None:
        res["id"] = rid
    return res


@FORMATS
@pytest.mark.parametrize(
    "full_url",
    [
        "http://example.org/documents/123",  # not [base]/[type]/[id]: need not end with Basic/123
        "http://example.org/Documents/123",  # "Documents" is no resource type
        "https://example.org/fhir/store/basic-notes/abc",
        "urn:uuid:04121321-4af5-424c-a0e1-ed3aab1c349d",
        "urn:oid:1.3.6.1.4.1.21367.100.99",
        "http://example.org/fhir/Basic/123",
        "https://example.org:8443/fhir/r4/Basic/123",
    ],
)
def test_full_url_need_only_agree_when_restful(validator: Validator, full_url: str, fmt: str) -> None:
    assert _errors(validator, _collection((full_url, _basic())), fmt) == []


@FORMATS
@pytest.mark.parametrize(
    ("full_url", "resource", "message"),
    [
        (
            "http://example.org/fhir/Patient/123",
            _basic(),
            "must end with the resource's type and id /Basic/123",
        ),
        (
            "http://example.org/fhir/Basic/124",
            _basic(),
            "must end with the resource's type and id /Basic/123",
        ),
        (
            "http://example.org/fhir/Basic/124",
            _basic(None),
            "looks like a RESTful URL ([base]/Basic/124), but",
        ),
    ],
)
def test_restful_full_url_must_agree_with_type_and_id(
    validator: Validator, full_url: str, resource: dict, message: str, fmt: str
) -> None:
    found = _errors(validator, _collection((full_url, resource)), fmt)
    assert [e for e in found if message in e and e.startswith("Bundle.entry[0].fullUrl")], found


def test_a_create_needs_no_id_in_its_full_url(validator: Validator) -> None:
    bundle = _collection(("http://example.org/fhir/Basic/new", _basic(None)), btype="transaction")
    bundle["entry"][0]["request"] = {"method": "POST", "url": "Basic"}
    assert _errors(validator, bundle) == []


# ---------------------------------------------------------------- 4. duplicates and bdl-7
def _patient(rid: str, version: str | None = None, **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Patient", "id": rid, **extra}
    if version is not None:
        res["meta"] = {"versionId": version}
    return res


A = "http://a.example.org/fhir/Patient/1"
B = "http://b.example.org/fhir/Patient/1"


@FORMATS
@pytest.mark.parametrize(
    "entries",
    [
        [(A, _patient("1", "1")), (A, _patient("1", "2"))],  # bdl-7: same fullUrl, other versionId
        [(A, _patient("1")), (B, _patient("1"))],  # same type/id on two servers
        [(A, _patient("1")), ("urn:uuid:9c1b5a2e-3d4f-4a6b-8c7d-0e1f2a3b4c5d", _patient("1"))],
    ],
    ids=["versions", "two-servers", "server-and-urn"],
)
def test_r4_duplicate_exceptions_are_valid(validator: Validator, entries: list, fmt: str) -> None:
    assert _errors(validator, _collection(*entries), fmt) == []


@FORMATS
@pytest.mark.parametrize(
    "entries",
    [
        [(A, _patient("1", "1")), (A, _patient("1", "1"))],
        [(A, _patient("1")), (A, _patient("1"))],
    ],
    ids=["same-version", "no-version"],
)
def test_duplicate_full_url_is_an_error(validator: Validator, entries: list, fmt: str) -> None:
    found = _errors(validator, _collection(*entries), fmt)
    assert [e for e in found if e.startswith("Bundle.entry[1].fullUrl: Duplicate fullUrl")], found
    assert not any("Duplicate resource" in e for e in found), found  # one problem, one message
    # a history bundle holds versions of one resource by definition
    history = _collection(*entries, btype="history")
    for i, entry in enumerate(history["entry"]):
        entry["request"] = {"method": "PUT", "url": "Patient/1"}
        entry["response"] = {"status": "200"} if i else {"status": "201"}
    assert not [e for e in _errors(validator, history, fmt) if "Duplicate" in e or "bdl-7" in e]


def test_same_type_and_id_twice_without_a_server_is_still_a_duplicate(validator: Validator) -> None:
    bundle = _collection(
        ("urn:uuid:8e4b7a5c-0f6a-4d8e-9c1e-1d2f3a4b5c6d", _patient("1")),
        ("urn:uuid:9e4b7a5c-0f6a-4d8e-9c1e-1d2f3a4b5c6d", _patient("1")),
    )
    assert any("Duplicate resource Patient/1" in e for e in _errors(validator, bundle))


@FORMATS
def test_version_specific_reference_resolves_to_that_version(validator: Validator, fmt: str) -> None:
    """R4 bundle.html, resolving references: match the fullUrl without the version, then
    meta.versionId. Version 2 has the birth date the target profile requires, version 1 not."""

    def bundle(version: str) -> dict[str, Any]:
        return _collection(
            (A, _patient("1", "1")),
            (A, _patient("1", "2", birthDate="1950-02-28")),
            (
                "http://a.example.org/fhir/Observation/o",
                {
                    "resourceType": "Observation",
                    "id": "o",
                    "meta": {"profile": [OBS_KNOWN]},
                    "status": "final",
                    "code": {"text": "weight"},
                    "subject": {"reference": f"{A}/_history/{version}"},
                },
            ),
        )

    assert _errors(validator, bundle("2"), fmt) == []
    assert _errors(validator, bundle("1"), fmt) == [
        f"Bundle.entry[2].resource.subject.reference: The referenced Patient does not conform to {KP}"
    ]


# ---------------------------------------------------------------- 9. message entries
def _message(with_full_urls: bool) -> dict[str, Any]:
    header = {
        "resourceType": "MessageHeader",
        "id": "h",
        "eventCoding": {"system": "http://example.org/events", "code": "notify"},
        "source": {"endpoint": "http://example.org/sender"},
        "focus": [{"reference": "Patient/p"}],
    }
    patient = {"resourceType": "Patient", "id": "p"}
    urls = ["http://example.org/fhir/MessageHeader/h", "http://example.org/fhir/Patient/p"]
    bundle = _collection(
        (urls[0] if with_full_urls else None, header),
        (urls[1] if with_full_urls else None, patient),
        btype="message",
    )
    bundle["timestamp"] = "2024-05-01T10:00:00Z"
    return bundle


@FORMATS
def test_message_entries_need_a_full_url(validator: Validator, fmt: str) -> None:
    assert _errors(validator, _message(True), fmt) == []
    found = [e for e in _errors(validator, _message(False), fmt) if "fullUrl" in e]
    assert found == [
        f"Bundle.entry[{i}]: Every entry of a message SHALL have a fullUrl (Bundle.entry.fullUrl has a value "
        "except on a POST or in the results of an operation)"
        for i in (0, 1)
    ]
    collection = _message(False)
    collection["type"] = "collection"
    assert not [e for e in _errors(validator, collection, fmt) if "fullUrl" in e]


# ---------------------------------------------------------------- 8. packages and folders with junk
@pytest.mark.parametrize("prefix", ["", "./"])
def test_package_with_junk_members_loads(tmp_path: Path, prefix: str) -> None:
    store = default_store().overlay()
    count = store.load(_package(tmp_path / "p.tgz", prefix=prefix))
    assert count == len(_definitions())
    assert store.get(OID + "|1.0.0") is not None and store.structure_definition(UUID) is not None
    skipped = "\n".join(store.skipped)
    # what looks like a definition but is not usable is named; junk and non-definition folders are not read
    assert "package/garbage.json: invalid JSON" in skipped
    assert "ValueSet without a canonical url" in skipped
    for quiet in ("._", "other/", "example/", "openapi/", "README", "__MACOSX"):
        assert quiet not in skipped, skipped


def test_folder_with_the_same_junk_loads(tmp_path: Path) -> None:
    root = tmp_path / "ig"
    for name, resource in _definitions().items():
        (root / "package").mkdir(parents=True, exist_ok=True)
        (root / "package" / name).write_text(json.dumps(resource), encoding="utf-8")
    for name, data in JUNK.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (root / ".git").mkdir()
    (root / ".git" / "config.json").write_text("[core]")
    (root / "notes.txt").write_text("not FHIR")
    store = ConformanceStore()
    assert store.load(root) == len(_definitions())
    assert any("garbage.json" in s for s in store.skipped)


def test_a_single_broken_file_is_still_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "StructureDefinition-x.json"
    bad.write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    with pytest.raises(ConformanceError, match=r"StructureDefinition-x\.json: invalid JSON"):
        ConformanceStore().load(bad)


def test_cli_validates_with_a_junk_package(package: Path, tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "patient.json"
    patient = {
        "resourceType": "Patient",
        "id": "p",
        "meta": {"profile": [UUID]},
        "extension": [{"url": EXT, "valueInteger": 3}],  # the urn:oid: extension takes a string
        "gender": "male",
    }
    path.write_text(json.dumps(patient), encoding="utf-8")
    code = main(["validate", str(path), "--ig", str(package), "--no-rulebook", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 1, (out, err)  # errors in the instance, not an unusable --ig (2)
    assert "cannot load --ig" not in err
    assert "Patient.birthDate: minimum required = 1" in out  # from the urn:oid: base of the urn:uuid: profile
    assert "Patient.extension[0].valueInteger" in out
