"""The fast paths of the user path say exactly what the reference paths say (issue 15).

- JSON: orjson's reading is taken only when it equals the stdlib's (values, their types,
  duplicate keys, errors and their positions);
- positions: the lazy JSON locator, read along the paths asked for, places every path where the
  full position tree places it; the XML locator places the elements it is asked for where the
  full index of the text places them;
- output: ``pretty_json`` / ``compact_json`` write what ``json.dumps`` writes, byte for byte.
"""

from __future__ import annotations

import codecs
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.fhirio import ParseError, jsonparse, parse, to_xml
from adapter.fhirio.errors import DEFAULT_LIMITS, FILE_LIMITS, Limits
from adapter.fhirio.jsonwrite import compact_json, pretty_json
from adapter.fhirio.locate import JsonLocator, JsonTreeLocator, line_cols
from adapter.fhirio.model import R4_RESOURCE_TYPES, core_model

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "samples").rglob("*.json")) + sorted((ROOT / "tests/data/fhirio").glob("*.json"))


def test_resource_type_names_are_the_core_models() -> None:
    assert core_model().resource_types == R4_RESOURCE_TYPES


# -- JSON reading ----------------------------------------------------------------------------------


def _strict(value: Any) -> Any:
    """A value with its JSON types spelled out, so that 1, 1.0, Decimal('1.0') and True differ."""
    if isinstance(value, dict):
        return ("dict", [(k, _strict(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_strict(v) for v in value])
    if isinstance(value, Decimal):
        return ("Decimal", str(value))
    return (type(value).__name__, value)


def _reading(text: str, raw: bytes | None, exact: bool, limits: Limits = DEFAULT_LIMITS) -> Any:
    try:
        value, duplicates = (
            jsonparse.loads_exact(text, limits) if exact else jsonparse.loads(text, limits, raw)
        )
    except ParseError as exc:
        return ("error", exc.message, exc.line, exc.col, exc.code)
    return ("ok", _strict(value), duplicates)


def _same_reading(text: str) -> None:
    raw = text.encode("utf-8", errors="surrogatepass")
    assert _reading(text, raw, exact=False) == _reading(text, raw, exact=True), text[:200]
    assert _reading(text, None, exact=False) == _reading(text, None, exact=True), text[:200]


TRICKY_JSON = [
    '{"a": 1, "a": 2}',
    '{"resourceType": "Patient", "id": "a:b", "gender": "x:", "gender": "y"}',
    '{"a": "x\\u003ay", "b": 1, "b": 2}',  # an escaped colon and a duplicate
    '{"a": "x\\u003Ay"}',
    '{"k\\u003a": 1}',
    '{"a": 1.50, "b": [1e2, -0.0, 0.1, 2E-3], "c": 10}',
    '{"a": 123456789012345678901234567890, "b": 18446744073709551616, "c": -9223372036854775809}',
    '{"a": ' + "9" * 5000 + "}",
    '{"a": NaN}',
    '{"a": Infinity}',
    '{"a": 1e400}',
    '{"a": "\\ud800"}',
    '{"a": "\\ud83d\\ude00 \\u00e9"}',
    '{"a": "\x01"}',
    '{"a": [1,]}',
    '{"a": 1} x',
    "[" * 101 + "]" * 101,
    '{"a": ' + "[" * 99 + "]" * 99 + "}",
    '{"a": ' + "[" * 100 + "]" * 100 + "}",
    '{"a": ' + "{\"b\": " * 120 + "1" + "}" * 120 + "}",
    "[1, 2]",
    '"text"',
    "12",
    "1.5",
    "",
    "   ",
    '{"": 1, "_": {"": [null, true, false]}}',
    '{"a": {"b": 1, "b": {"c": 1, "c": 2}}}',
    '{"a": "\\" : \\\\", "b": "\\\\\\":"}',
]


@pytest.mark.parametrize("text", TRICKY_JSON, ids=range(len(TRICKY_JSON)))
def test_fast_json_reading_is_the_exact_one(text: str) -> None:
    _same_reading(text)


@pytest.mark.parametrize("path", SAMPLES[::3], ids=lambda p: p.name)
def test_fast_json_reading_of_the_samples(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    _same_reading(text)
    _same_reading(text.replace('"status"', '"status": "x", "status"', 1))  # a duplicate key


_KEYS = st.sampled_from(["a", "b", "id", "url", "a:b", "", "_x", "é", "k\\u003a"])
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(["1.0", "1e5", "-0.0", "3.14159265358979323846", "1E-7"]).map(lambda s: f"@{s}"),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8),
)


def _json_text(value: Any) -> str:
    """JSON text from a tree whose dicts are lists of pairs (so keys may repeat) and whose
    ``@...`` strings are raw numbers."""
    if isinstance(value, tuple):
        return "{" + ", ".join(f"{json.dumps(k)}: {_json_text(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_json_text(v) for v in value) + "]"
    if isinstance(value, str) and value.startswith("@"):
        return value[1:]
    return json.dumps(value, ensure_ascii=False)


_TREES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(st.tuples(_KEYS, inner), max_size=4).map(tuple),
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(_TREES)
def test_fast_json_reading_is_the_exact_one_on_any_tree(tree: Any) -> None:
    text = _json_text(tree if isinstance(tree, tuple) else (("a", tree),))
    _same_reading(text)


def test_parse_takes_the_fast_path_and_keeps_decimals() -> None:
    doc = parse(b'{"resourceType": "Observation", "valueQuantity": {"value": 1.50}, "status": "final"}')
    value = doc.resource["valueQuantity"]["value"]
    assert isinstance(value, Decimal) and str(value) == "1.50"
    bom = codecs.BOM_UTF8 + b'{"resourceType": "Patient", "gender": "x"}'
    assert parse(bom).resource == {"resourceType": "Patient", "gender": "x"}


# -- positions ------------------------------------------------------------------------------------


def _paths(value: Any, root: str) -> list[str]:
    """Every FHIRPath with indexes of a value, plus missing children, type filters and functions."""
    out = [root, f"{root}.first()", f"{root}.where(x = 1).y", "Other.x", ""]

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            out.append(f"{path}.missing")
            if "resourceType" in node and path != root:
                rtype = node["resourceType"]
                typed = (f"ofType({rtype})", f"{rtype}.id", f"as({rtype}).meta.profile[0]")
                out.extend(f"{path}.{t}" for t in typed)
            for k, v in node.items():
                p = f"{path}.{k.lstrip('_')}"
                out.append(p)
                choice = re.match(r"_?([a-z]+)[A-Z]", k)
                if choice:  # valueQuantity is what the path ``value`` finds
                    out.append(f"{path}.{choice.group(1)}")
                if isinstance(v, list):
                    out.append(f"{p}[{len(v)}]")
                    for i, item in enumerate(v):
                        out.append(f"{p}[{i}]")
                        walk(item, f"{p}[{i}]")
                else:
                    walk(v, p)

    walk(value, root)
    return out


def _layouts(text: str) -> list[str]:
    value = json.loads(text)
    return [
        text,
        text.replace("\n", "\r\n"),
        json.dumps(value, separators=(",", ":"), ensure_ascii=False),
        json.dumps(value, indent="\t", ensure_ascii=True),
    ]


@pytest.mark.parametrize("path", SAMPLES[::4], ids=lambda p: p.name)
def test_lazy_json_positions_are_the_full_trees(path: Path) -> None:
    for text in _layouts(path.read_text(encoding="utf-8")):
        doc = parse(text)
        rtype = doc.resource["resourceType"]
        paths = _paths(doc.resource, rtype)
        tree = JsonTreeLocator(text, rtype)
        expected = {p: tree.locate(p) for p in paths}
        assert JsonLocator(text, rtype).locate_many(paths) == expected
        lazy = JsonLocator(text, rtype)
        assert {p: lazy.locate(p) for p in reversed(paths)} == expected  # in any order, cached
        assert parse(text).locate_many(paths) == expected


def test_line_cols_counts_as_the_line_index() -> None:
    from adapter.fhirio.locate import LineIndex

    text = 'a\r\nbc\n\n\tdé𝄞\nlast'
    index = LineIndex(text)
    offsets = list(range(len(text)))
    assert line_cols(text, offsets) == {o: index(o) for o in offsets}


def _xml_paths(doc: Any) -> list[str]:
    return _paths(doc.resource, doc.resource["resourceType"])


@pytest.mark.parametrize("path", SAMPLES[::5], ids=lambda p: p.name)
def test_xml_positions_asked_for_are_the_full_indexes(path: Path) -> None:
    from adapter.fhirio.xmllocate import XmlLocator, source_text

    xml = to_xml(parse(path.read_bytes()).resource)
    variants = [xml, xml.replace("\n", "\r\n"), xml.replace("<name>", "<!-- <x/> --><name>", 1)]
    for text in variants:
        doc = parse(text)
        paths = _xml_paths(doc)
        root = doc._source.root
        full = XmlLocator(root, source_text(text, root))
        full._index_all()
        expected = {p: full.locate(p) for p in paths}
        assert doc.locate_many(paths) == expected
        one_by_one = parse(text)
        assert {p: one_by_one.locate(p) for p in paths[:12]} == {p: expected[p] for p in paths[:12]}


# -- output ---------------------------------------------------------------------------------------


def test_pretty_and_compact_json_write_every_character_as_json_dumps() -> None:
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(chars), 4096):
        chunk = {"k" + "".join(chars[start : start + 8]): ["".join(chars[start : start + 4096])]}
        assert pretty_json(chunk) == json.dumps(chunk, indent=2, ensure_ascii=False)
        assert compact_json(chunk) == json.dumps(chunk, ensure_ascii=False, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "value",
    [
        {"a": [], "b": {}, "c": [1, {"d": None, "e": True, "f": [[]]}], "g": -3},
        {"duration_ms": 12.5, "tiny": 1e-05, "big": 1e16, "nan": float("nan")},
        {"n": 2**64, "m": -(2**63) - 1},
        {1: "int key", None: "none key"},
        {"t": (1, 2)},
        {"s": "\ud800 lone surrogate"},
        [1.5, 0.0001, 12345678.901],
    ],
    ids=range(7),
)
def test_pretty_json_falls_back_where_orjson_would_differ(value: Any) -> None:
    assert pretty_json(value) == json.dumps(value, indent=2, ensure_ascii=False)
    try:
        expected = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            compact_json(value)
        return
    assert compact_json(value) == expected


def test_pretty_json_refuses_what_json_dumps_refuses() -> None:
    with pytest.raises(TypeError):
        pretty_json({"d": Decimal("1.5")})


def test_a_large_file_has_no_size_limit_but_the_service_keeps_one() -> None:
    body = b'{"resourceType": "Basic", "code": {"text": "' + b"x" * (11 * 1024 * 1024) + b'"}}'
    with pytest.raises(ParseError) as exc:
        parse(body)
    assert exc.value.code == "too-costly"
    assert parse(body, limits=FILE_LIMITS).resource["resourceType"] == "Basic"


def test_reading_pauses_the_collector_and_gives_it_back() -> None:
    import gc
    import threading

    assert gc.isenabled()
    parse(b'{"resourceType": "Patient"}')
    with pytest.raises(ParseError):
        parse(b'{"resourceType": "Pateint"}')
    assert gc.isenabled()
    gc.disable()
    try:
        parse(b'{"resourceType": "Patient"}')
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        gc.enable()
    entries = [{"resource": {"resourceType": "Basic"}}] * 2000
    body = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}).encode()
    threads = [threading.Thread(target=parse, args=(body,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert gc.isenabled()


def test_a_pause_that_ends_while_others_go_on_collects_once_overdue(monkeypatch: pytest.MonkeyPatch) -> None:
    """Overlapping pauses (concurrent requests) must not keep the collector off for good: past
    COLLECT_PAST young objects, a pause that ends while another goes on collects the cyclic
    garbage made meanwhile; below it, nothing is collected until the last pause ends."""
    import gc
    import weakref

    from adapter.fhirio import document

    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector frees it

    def garbage() -> weakref.ref[Node]:
        node = Node()
        return weakref.ref(node)

    monkeypatch.setattr(document, "COLLECT_PAST", 10_000)
    assert gc.isenabled()
    with document.collector_paused():  # another request, still validating
        with document.collector_paused():
            few = garbage()
        assert few() is not None  # below the bound: left for later
        with document.collector_paused():
            many = garbage()
            kept = [[] for _ in range(20_000)]  # young objects past the bound
        assert many() is None and few() is None  # collected although a pause goes on
        assert not gc.isenabled()
        del kept
    assert gc.isenabled()
