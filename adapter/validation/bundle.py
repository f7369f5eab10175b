"""Bundle rules the definitions cannot express: fullUrl form and uniqueness, duplicate
resources, reference resolution across entries, and transaction/batch request rules.

Everything runs over one ``BundleIndex`` built once per Bundle, so a 10,000-entry bundle costs
10,000 steps, not 10,000 squared.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from adapter.fhirio.scan import scan
from adapter.validation.references import BundleIndex, restful_parts, version_id

if TYPE_CHECKING:
    from adapter.validation.walker import Walker

_ABSOLUTE = re.compile(r"^(https?://\S+|urn:uuid:[0-9a-fA-F-]{36}|urn:oid:[0-2](\.(0|[1-9][0-9]*))+)$")
_UUID_URN = re.compile(
    r"^urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"})


def check_bundle(walker: Walker, bundle: dict[str, Any], expr: str, index: BundleIndex) -> None:
    """R4 bundle.html: entry identity (fullUrl, and its agreement with the resource's type and
    id when it is a RESTful URL), uniqueness (bdl-7 and its exceptions), message entries, requests,
    references and links."""
    btype = bundle.get("type")
    # the identity of an entry is its fullUrl plus meta.versionId: the same fullUrl may appear
    # once per version (bdl-7), any number of times in a history bundle
    seen_urls: dict[tuple[str, str | None], int] = {}
    # the same type/id is the same resource only on the same server: under different RESTful
    # base URLs (or one RESTful and one URN) they are different resources
    seen_ids: dict[tuple[str | None, str, str, str | None], int] = {}
    raw_entries = bundle.get("entry") or []
    for entry in index:
        eexpr = f"{expr}.entry[{entry.index}]"
        raw = raw_entries[entry.index]
        full_url = entry.full_url
        res = entry.resource
        version = version_id(res)
        restful = None
        duplicate = False
        if full_url is None:
            if btype == "message" and isinstance(raw, dict) and "_fullUrl" not in raw:
                walker.report(
                    "error",
                    "required",
                    eexpr,
                    "Every entry of a message SHALL have a fullUrl (Bundle.entry.fullUrl has a value "
                    "except on a POST or in the results of an operation)",
                    source="bundle",
                    message_id="BUNDLE_BUNDLE_ENTRY_FULLURL_REQUIRED",
                )
        else:
            if not _ABSOLUTE.match(full_url):
                walker.report(
                    "error",
                    "invalid",
                    f"{eexpr}.fullUrl",
                    f"The fullUrl must be an absolute URL (not '{full_url}')",
                    source="bundle",
                )
            elif full_url.startswith("urn:uuid:") and not _UUID_URN.match(full_url):
                walker.report(
                    "error", "invalid", f"{eexpr}.fullUrl", f"Invalid UUID URN '{full_url}'", source="bundle"
                )
            else:
                restful = restful_parts(full_url)
                if restful is not None and not walker.index.is_resource_type(restful[1]):
                    restful = None  # e.g. http://example.org/documents/123: any URL may identify a resource
            url_key = (full_url, version)
            if url_key in seen_urls and btype != "history":
                walker.report(
                    "error",
                    "invalid",
                    f"{eexpr}.fullUrl",
                    f"Duplicate fullUrl '{full_url}' (also at entry[{seen_urls[url_key]}])"
                    + (f" with the same meta.versionId '{version}'" if version is not None else "")
                    + ": entries with the same fullUrl must have different meta.versionId (bdl-7)",
                    source="bundle",
                )
                duplicate = True  # one message for one duplicate
            seen_urls.setdefault(url_key, entry.index)
        if btype in ("transaction", "batch") and isinstance(raw, dict):
            _check_request(walker, raw, eexpr)
        if res is None or not isinstance(res.get("resourceType"), str):
            continue
        rtype, rid = res["resourceType"], res.get("id")
        if restful is not None and not _creates(raw):
            _check_restful_full_url(walker, full_url or "", restful, rtype, rid, eexpr)
        if isinstance(rid, str) and btype != "history":
            base = restful[0] if restful is not None else None
            key = (base, rtype, rid, version)
            if key in seen_ids and not duplicate:
                walker.report(
                    "error",
                    "invalid",
                    f"{eexpr}.resource",
                    f"Duplicate resource {rtype}/{rid} in the bundle (also at entry[{seen_ids[key]}])",
                    source="bundle",
                    message_id="BUNDLE_MULTIPLE_MATCHES",
                )
            seen_ids.setdefault(key, entry.index)
    if btype in ("document", "message", "transaction", "collection", "transaction-response", "batch"):
        _check_references(walker, bundle, expr, index, btype)
    _check_links(walker, bundle, expr)


def _creates(raw: Any) -> bool:
    """A create (POST) has no id yet: its fullUrl is only a placeholder for references."""
    request = raw.get("request") if isinstance(raw, dict) else None
    return isinstance(request, dict) and request.get("method") == "POST"


def _check_restful_full_url(
    walker: Walker, full_url: str, restful: tuple[str, str, str, str | None], rtype: str, rid: Any, eexpr: str
) -> None:
    """A fullUrl that looks like a RESTful URL ([base]/[type]/[id]) SHALL agree with the resource's
    type and id (R4 Bundle.entry.fullUrl); other absolute URLs need not end with them."""
    _base, url_type, url_id, _hist = restful
    if not isinstance(rid, str):
        walker.report(
            "error",
            "invalid",
            f"{eexpr}.fullUrl",
            f"The fullUrl '{full_url}' looks like a RESTful URL ([base]/{url_type}/{url_id}), "
            "but the resource has no id",
            source="bundle",
            message_id="BUNDLE_ENTRY_URL_MATCHES_NO_ID",
        )
    elif (url_type, url_id) != (rtype, rid):
        walker.report(
            "error",
            "invalid",
            f"{eexpr}.fullUrl",
            f"The fullUrl '{full_url}' looks like a RESTful URL, so it must end with the resource's "
            f"type and id /{rtype}/{rid}",
            source="bundle",
            message_id="BUNDLE_ENTRY_URL_MATCHES_TYPE_ID",
        )


def _check_request(walker: Walker, raw: dict[str, Any], eexpr: str) -> None:
    request = raw.get("request")
    if not isinstance(request, dict):
        return  # bdl-3 reports the missing request
    method = request.get("method")
    url = request.get("url")
    if isinstance(method, str) and method not in _METHODS:
        return  # the required binding reports it
    if method in ("PUT", "PATCH", "DELETE") and isinstance(url, str) and "?" not in url and "/" not in url:
        walker.report(
            "error",
            "invalid",
            f"{eexpr}.request.url",
            f"A {method} request URL must name a resource instance (Type/id), not '{url}'",
            source="bundle",
        )
    if method == "POST" and isinstance(url, str) and "/" in url.strip("/"):
        walker.report(
            "warning",
            "invalid",
            f"{eexpr}.request.url",
            f"A POST request URL should be the resource type, not an instance ('{url}')",
            source="bundle",
        )
    resource = raw.get("resource")
    if method in ("POST", "PUT") and not isinstance(resource, dict):
        walker.report("error", "required", f"{eexpr}", f"A {method} entry needs a resource", source="bundle")
    if isinstance(resource, dict) and isinstance(url, str) and method in ("POST", "PUT"):
        rtype = url.split("?", 1)[0].strip("/").split("/", 1)[0]
        if rtype and rtype != resource.get("resourceType"):
            walker.report(
                "error",
                "invalid",
                f"{eexpr}.request.url",
                f"The request URL '{url}' does not match the resource type {resource.get('resourceType')}",
                source="bundle",
            )


def _check_references(
    walker: Walker, bundle: dict[str, Any], expr: str, index: BundleIndex, btype: Any
) -> None:
    for entry in index:
        res = entry.resource
        if res is None:
            continue
        base = f"{expr}.entry[{entry.index}].resource"
        for ref, rpath in walker.scans.of(res, base).references:
            if ref.startswith("#") or not ref:
                continue
            if index.resolve(ref, entry.full_url) is not None:
                continue
            if ref.startswith("urn:uuid:") or ref.startswith("urn:oid:"):
                walker.report(
                    "error",
                    "not-found",
                    rpath,
                    f"Unable to resolve the reference '{ref}' inside the bundle",
                    source="bundle",
                )
            elif btype == "document":
                walker.report(
                    "warning",
                    "not-found",
                    rpath,
                    f"Unable to resolve the reference '{ref}' inside the document bundle",
                    source="bundle",
                )


def _check_links(walker: Walker, bundle: dict[str, Any], expr: str) -> None:
    seen: set[str] = set()
    links = bundle.get("link")  # not an array: a shape error the walk reports
    for i, link in enumerate(links if isinstance(links, list) else ()):
        if not isinstance(link, dict):
            continue
        rel = link.get("relation")
        if rel in ("self", "first", "previous", "next", "last") and rel in seen:
            walker.report(
                "error",
                "invalid",
                f"{expr}.link[{i}]",
                f"The link relationship type '{rel}' can only occur once",
                source="bundle",
            )
        if isinstance(rel, str):
            seen.add(rel)


def _parameter_resources(parameters: list[Any], path: str) -> Iterator[tuple[dict[str, Any], str]]:
    for i, param in enumerate(parameters):
        if not isinstance(param, dict):
            continue
        if isinstance(param.get("resource"), dict):
            yield param["resource"], f"{path}[{i}].resource"
        parts = param.get("part")
        yield from _parameter_resources(parts if isinstance(parts, list) else [], f"{path}[{i}].part")


def check_parameters(walker: Walker, parameters: dict[str, Any], expr: str) -> None:
    """Resources carried in one Parameters refer to each other like bundle entries do: a
    relative reference to a resource type that the Parameters carries must resolve."""
    params = parameters.get("parameter")  # not an array: a shape error the walk reports
    resources = list(_parameter_resources(params if isinstance(params, list) else [], f"{expr}.parameter"))
    # only string types and ids take part (any other shape is a structure error of its own)
    typed = [(r.get("resourceType"), r.get("id")) for r, _ in resources]
    ids = {(t, i) for t, i in typed if isinstance(t, str) and isinstance(i, str)}
    carried = {t for t, _ in typed if isinstance(t, str)}
    for res, path in resources:
        for ref, rpath in scan(res, path).references:
            parts = ref.split("/")
            if len(parts) == 2 and parts[0] in carried and (parts[0], parts[1]) not in ids:
                walker.report(
                    "error",
                    "not-found",
                    rpath,
                    f"Unable to resolve resource with reference '{ref}'",
                    source="bundle",
                )
