"""Input of the wrong shape: reported, never a crash.

Valid care bundles (``samples/valid``) with one node (an object member, an array item, a
primitive) replaced by a value of another JSON shape (true, 0, 1.5, "x", "", {}, [], [{}],
nested values), as JSON and as XML. Whatever the input:

- the validator raises nothing and gives an OperationOutcome, with no internal failure in it
  (an ``exception`` issue would mean a checker tripped over the shape instead of reporting it);
- a node whose JSON shape changed makes the input invalid (the shape error is reported);
- ``becare validate`` exits 0, 1 or 2, never with a traceback;
- the service never answers 500 to ``$validate`` nor to ``POST /fhir``.

A hypothesis test explores mutations (nested values, several paths, XML text mutations) through
all three; a deterministic sweep tries every replacement shape at one representative of every
distinct path of the samples (bounded to stay well under a minute).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from adapter.cli.main import main
from adapter.fhirio import ParseError, to_xml
from adapter.forwarding.routing import Router
from adapter.forwarding.settings import settings_from_dict
from adapter.outbox.store import Outbox
from adapter.registry import EpisodeRegistry
from adapter.service.app import create_app
from adapter.service.config import RateLimit, ServiceConfig
from adapter.validation import Validator
from adapter.validation.api import Report, ValidationOptions
from adapter.validation.issues import operation_outcome

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "samples" / "valid").glob("*.json"))
DOCS = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in SAMPLES}
JSON = "application/fhir+json"
XML = "application/fhir+xml"
NESTED = {"a": [1, {"b": None, "reference": [True]}], "coding": {"code": []}}
SHAPES: tuple[Any, ...] = (True, 0, 1.5, "x", "", {}, [], [{}], NESTED)

Path_ = tuple[str | int, ...]


# -- mutations ---------------------------------------------------------------------------------------


def kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null"


def paths(node: Any, here: Path_ = ()) -> Iterator[Path_]:
    """Every node below the root: object members, array items, primitives."""
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, child in items:
        yield (*here, key)
        yield from paths(child, (*here, key))


def at(root: Any, path: Path_) -> Any:
    for key in path:
        root = root[key]
    return root


def replaced(root: dict[str, Any], path: Path_, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(root)
    parent = at(out, path[:-1])
    parent[path[-1]] = copy.deepcopy(value)
    return out


ALL_PATHS = {name: list(paths(doc)) for name, doc in DOCS.items()}


def representatives() -> list[tuple[str, Path_]]:
    """One (sample, path) per distinct (resource type, path without indexes, JSON shape)."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for name, doc in DOCS.items():
        for path in ALL_PATHS[name]:
            rtype = None
            if len(path) >= 3 and path[0] == "entry" and path[2] == "resource":
                rtype = doc["entry"][path[1]]["resource"].get("resourceType")
            key = (rtype, tuple(k for k in path if isinstance(k, str)), kind(at(doc, path)))
            if key not in seen:
                seen.add(key)
                out.append((name, path))
    return out


# -- checks ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator()


def _internal(report: Report) -> list[Any]:
    return [i for i in report.issues if i.is_error and i.code == "exception"]


def check_report(report: Report, where: str) -> None:
    assert _internal(report) == [], f"{where}: internal failure {_internal(report)}"
    oo = operation_outcome(report.issues, rulebook_version=report.rulebook_version)
    assert oo["resourceType"] == "OperationOutcome" and oo["issue"]
    json.dumps(oo, default=str)


def validate_json(validator: Validator, resource: Any, where: str, *, shape_changed: bool) -> None:
    try:
        report = validator.validate_bytes(json.dumps(resource).encode(), JSON, ValidationOptions())
    except ParseError:
        # the one documented refusal: the root is not a (known) resource (CLI exit 2, service 400)
        assert resource.get("resourceType") != "Bundle", where
        return
    check_report(report, where)
    if shape_changed:
        assert report.has_errors, f"{where}: a node of another JSON shape passed"


def xml_of(resource: dict[str, Any]) -> bytes | None:
    """The mutated resource as XML, when it can be written (a non-XHTML div, say, cannot)."""
    try:
        return to_xml(resource).encode()
    except (ValueError, TypeError):
        return None


def validate_xml(validator: Validator, data: bytes, where: str) -> None:
    try:
        report = validator.validate_bytes(data, XML, ValidationOptions())
    except ParseError:
        return  # unparseable is a documented answer (CLI exit 2, service 400)
    check_report(report, where)


# -- the deterministic sweep -------------------------------------------------------------------------


# Each path gets every JSON shape; the two or three variants of a shape take turns from one path
# to the next, so each variant still meets every kind of node (about 400 paths x 5 shapes).
ROTATION = ((True, 0, 1.5), ("x", ""), ({}, NESTED), ([], [{}]), (None,))


def test_sweep_every_path_every_shape(validator: Validator) -> None:
    """Each distinct path of the samples (resource type, path without indexes, JSON shape), each
    replacement shape, as JSON; half of the paths also as XML."""
    reps = representatives()
    assert len(reps) > 300
    for n, (name, path) in enumerate(reps):
        doc = DOCS[name]
        original = at(doc, path)
        for shape in (variants[n % len(variants)] for variants in ROTATION):
            if shape == original and kind(shape) == kind(original):
                continue
            mutated = replaced(doc, path, shape)
            where = f"{name} {'.'.join(map(str, path))} <- {json.dumps(shape)}"
            validate_json(validator, mutated, where, shape_changed=kind(shape) != kind(original))
        if n % 2 == 0:  # XML is slower to parse: half of the paths, one shape each
            shape = SHAPES[n // 2 % len(SHAPES)]
            data = xml_of(replaced(doc, path, shape))
            if data is not None:
                validate_xml(validator, data, f"{name} {'.'.join(map(str, path))} <- {shape!r} (XML)")


def test_sweep_wrong_root_members(validator: Validator) -> None:
    """The Bundle's own members replaced by every shape."""
    doc = DOCS[SAMPLES[0].name]
    for key in doc:
        for shape in SHAPES:
            if key == "resourceType":
                continue
            validate_json(validator, replaced(doc, (key,), shape), f"Bundle.{key} <- {shape!r}",
                          shape_changed=kind(shape) != kind(doc[key]))


# -- hypothesis: the validator, the command line and the service ------------------------------------


KEYS = st.sampled_from(["a", "url", "value", "valueString", "coding", "code", "system", "reference",
                        "resourceType", "id", "extension", "profile", "meta", "entry", "resource"])
LEAVES = st.one_of(
    st.sampled_from([True, False, 0, 1.5, "x", "", "Patient/1", "urn:uuid:x", None]),
    st.integers(-3, 3),
    st.text(max_size=4),
)
VALUES = st.one_of(
    st.sampled_from(SHAPES),
    st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
                 max_leaves=6),
)


@st.composite
def mutations(draw: Any) -> tuple[str, dict[str, Any], dict[str, Any], list[tuple[Path_, Any, Any]]]:
    """(sample, original, mutated, [(path, before, after)]): one to three replacements."""
    name = draw(st.sampled_from(sorted(DOCS)))
    doc = DOCS[name]
    mutated = copy.deepcopy(doc)
    changes: list[tuple[Path_, Any, Any]] = []
    for _ in range(draw(st.integers(1, 3))):
        candidates = list(paths(mutated))
        path = candidates[draw(st.integers(0, len(candidates) - 1))]
        before = at(mutated, path)
        after = draw(VALUES)
        mutated = replaced(mutated, path, after)
        changes.append((path, before, after))
    return name, doc, mutated, changes


def mutate_xml_text(data: bytes, seed: int) -> bytes:
    """A mutation only XML can carry: a value on an element that takes none, a primitive that
    loses its value, an unexpected child, text content, a repeated element."""
    rng = random.Random(seed)
    root = etree.fromstring(data)
    elements = [e for e in root.iter() if isinstance(e.tag, str) and "xhtml" not in e.tag]
    target = rng.choice(elements)
    how = rng.randrange(5)
    if how == 0:
        target.set("value", rng.choice(["x", "", "true", "1.5"]))
    elif how == 1 and "value" in target.attrib:
        del target.attrib["value"]
    elif how == 2:
        etree.SubElement(target, target.tag.split("}")[0] + "}" + rng.choice(["value", "coding", "x", "id"]))
    elif how == 3:
        target.text = "text"
    elif target.getparent() is not None:
        target.addnext(copy.deepcopy(target))
    return etree.tostring(root)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def client(validator: Validator, workdir: Path) -> Iterator[TestClient]:
    outbox = Outbox(f"sqlite:///{workdir / 'outbox.db'}")
    registry = EpisodeRegistry(f"sqlite:///{workdir / 'registry.db'}", salt="fuzz")
    router = Router(settings_from_dict({"destinations": {"hub": {"url": "http://127.0.0.1:9/fhir"}},
                                        "routing": {"default": "hub"}}))
    # no request timeout: a slow CI machine must not turn into a 503
    config = ServiceConfig(rate_limit=RateLimit(per_second=0, burst=1), request_timeout=0)
    app = create_app(config, validator=validator, outbox=outbox, router=router, registry=registry)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    registry.close()
    outbox.close()


def run_cli(path: Path, out: Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["validate", "--no-progress", "--format", "json", "--output", str(out), str(path)])
    return code, err.getvalue()


def check_cli(path: Path, workdir: Path) -> None:
    out = workdir / "report.json"
    code, err = run_cli(path, out)
    assert code in (0, 1, 2), code
    assert "Traceback" not in err, err
    oo = json.loads(out.read_text(encoding="utf-8"))
    assert oo["resourceType"] == "OperationOutcome"
    internal = [i for i in oo["issue"] if i["code"] == "exception"]
    assert internal == [], internal


def check_service(client: TestClient, data: bytes, ctype: str) -> None:
    for endpoint in ("/fhir/$validate", "/fhir"):
        r = client.post(endpoint, content=data, headers={"Content-Type": ctype})
        assert r.status_code < 500, (endpoint, r.status_code, r.text[:500])
        if "json" in r.headers.get("content-type", ""):
            assert r.json()["resourceType"] == "OperationOutcome"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutations(), seed=st.integers(0, 2**16))
def test_mutated_bundles(
    case: Any, seed: int, validator: Validator, client: TestClient, workdir: Path
) -> None:
    name, _doc, mutated, changes = case
    where = f"{name} {[(p, a) for p, _b, a in changes]}"
    shape_changed = any(kind(before) != kind(after) for _p, before, after in changes)
    # each change may have replaced a node that a later one replaced again: judge only the last
    shape_changed = shape_changed and len(changes) == 1

    validate_json(validator, mutated, where, shape_changed=shape_changed)
    json_file = workdir / "case.json"
    json_file.write_text(json.dumps(mutated), encoding="utf-8")
    check_cli(json_file, workdir)
    check_service(client, json_file.read_bytes(), JSON)

    data = xml_of(mutated) or xml_of(DOCS[name])
    assert data is not None
    xml_data = mutate_xml_text(data, seed) if seed % 2 else data
    validate_xml(validator, xml_data, where + " (XML)")
    xml_file = workdir / "case.xml"
    xml_file.write_bytes(xml_data)
    check_cli(xml_file, workdir)
    check_service(client, xml_data, XML)
