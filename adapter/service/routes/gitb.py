"""``POST /gitb/validation``: the GITB validation service (SOAP 1.1) for the interoperability test
bed, and ``GET /gitb/validation?wsdl`` (``?xsd=NAME`` for its imports). See docs/gitb.md.

The same gate as ``$validate`` (``deps.requires("validate")``: credentials, rate limit, the
``region`` / ``today`` query parameters) and the same body limit; a refusal there keeps its HTTP
status and headers (401 + WWW-Authenticate, 429 + Retry-After, 413) with a SOAP Fault as body.
The WSDL and XSDs need no credentials, like ``/fhir/metadata``: they describe the API, not data.

Validation is ``$validate``'s: the app's validator, ``core.options`` (registry, suppressions,
today), counted and audited alike. Every GITB request gets a TAR report, also when the content
could not be checked (FAILURE with an error item saying so: fail closed); a SOAP Fault only
answers what is not a GITB request at all.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from dataclasses import replace
from typing import Any
from urllib.parse import urljoin

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response
from lxml import etree
from starlette.concurrency import run_in_threadpool

from adapter.fhirio.errors import ParseError
from adapter.gitb import envelope as gitb_envelope
from adapter.gitb import inputs as gitb_inputs
from adapter.gitb import soap
from adapter.gitb.messages import message as gitb_message
from adapter.gitb.module import module_definition
from adapter.gitb.tar import TarContext, build_tar
from adapter.gitb.uris import allowed
from adapter.gitb.wsdl import wsdl_text, xsd_text
from adapter.rules.checks import RegistryUnavailable
from adapter.service import core
from adapter.service import negotiation as neg
from adapter.service.config import GitbConfig
from adapter.service.deps import Call, read_body, requires
from adapter.service.errors import ServiceError
from adapter.service.messages import message
from adapter.service.state import AppState, ServiceState
from adapter.validation.issues import Issue, operation_outcome

log = logging.getLogger("becare.service.gitb")

PATH = "/gitb/validation"
router = APIRouter(tags=["gitb"])
_GATE = requires("validate")
_MAX_REDIRECTS = 5


def endpoint_url(request: Request) -> str:
    """This endpoint's own URL as the client reached it (for the WSDL address and imports)."""
    return str(request.base_url).rstrip("/") + PATH


def _xml(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=soap.CONTENT_TYPE, headers=headers)


@router.get(PATH, response_class=Response, summary="GITB validation service WSDL (?wsdl), XSDs (?xsd=NAME)")
async def describe(request: Request) -> Response:
    params = {k.lower(): v for k, v in request.query_params.items()}
    endpoint = endpoint_url(request)
    if "wsdl" in params:
        return _xml(wsdl_text(endpoint))
    if "xsd" in params:
        text = xsd_text(params["xsd"], endpoint)
        if text is None:
            raise ServiceError(404, "not-found", code="not-found", value=f"{PATH}?xsd={params['xsd'][:60]}")
        return _xml(text)
    raise ServiceError(400, "bad-request", value=f"use {PATH}?wsdl for the service description")


@router.post(PATH, response_class=Response, summary="GITB validation service (SOAP 1.1)")
async def gitb_soap(request: Request, state: AppState) -> Response:
    lang = neg.language(request.headers.get("accept-language"))
    started = time.monotonic()
    try:
        call = _GATE(request)
        data = await read_body(request, state.config.max_body_bytes)
    except ServiceError as exc:  # HTTP-level refusal: its status and headers, a Fault to read
        return _xml(soap.fault_envelope(message(exc.key, lang, **exc.values)), exc.status, exc.headers)
    try:
        req = gitb_envelope.read_request(data)
    except gitb_envelope.NotGitb as exc:
        state.audit.record("validate", who=call.principal.id, what=None, outcome="failure",
                           detail="not a GITB request")
        code = "VersionMismatch" if exc.version_mismatch else "Client"
        text = f"Not a GITB validation service request: {exc.reason}"
        return _xml(soap.fault_envelope(text, code=code), 500)
    if req.operation == "getModuleDefinition":
        payload = module_definition(_version())
    else:
        report = await _validate(state, call, req, started)
        payload = soap.validation_response(report)
    body = soap.response_envelope(payload, operation=req.operation, relates_to=req.message_id,
                                  addressing_ns=req.addressing_ns)
    return _xml(body)


# -- validate ----------------------------------------------------------------------------------------
class _NotChecked(Exception):
    """The content could not be checked: the items that say why (always at least one error)."""

    def __init__(self, issues: list[Issue], *, content: str | None = None) -> None:
        super().__init__(len(issues))
        self.issues = issues
        self.content = content


def _refusal(key: str, lang: str, **values: str) -> _NotChecked:
    return _NotChecked([_problem_issue(gitb_inputs.Problem(key, values), lang)])


def _problem_issue(problem: gitb_inputs.Problem, lang: str) -> Issue:
    return Issue(severity="error", code="invalid", expression="", source="service",
                 message=gitb_message(problem.key, lang, **problem.values),
                 message_id=f"becare-gitb-{problem.key}")


def _not_checked(key: str, lang: str, **values: object) -> Issue:
    detail = gitb_message(key, lang, **values)
    return Issue(severity="error", code="exception", expression="", source="service",
                 message=gitb_message("not-checked", lang, detail=detail), message_id=f"becare-gitb-{key}")


async def _validate(state: ServiceState, call: Call, soap_req: gitb_envelope.SoapRequest,
                    started: float) -> etree._Element:
    """The TAR for one ``validate`` call; never raises."""
    now = dt.datetime.now(dt.UTC).astimezone()
    lang = call.neg.lang
    req: gitb_inputs.GitbRequest | None = None
    try:
        req = gitb_inputs.interpret(gitb_inputs.read_inputs(soap_req.payload))
        lang = req.lang or lang
        if req.problems:
            raise _NotChecked([_problem_issue(p, lang) for p in req.problems])
        return await _checked(state, call, req, lang, now, started)
    except _NotChecked as exc:
        state.audit.record("validate", who=call.principal.id, what=None, outcome="failure",
                           detail=f"not checked (gitb): {exc.issues[0].message_id}")
        add = req.add_input if req is not None else True
        return build_tar(TarContext(
            issues=exc.issues, now=now, fail_on="error", content=exc.content if add else None,
            profile_id=req.validation_type if req is not None else None, service_version=_version(),
        ))
    except Exception:  # fail closed: a report that says the content was not checked
        ref = uuid.uuid4().hex[:12]
        log.exception("GITB validation failed, reference %s", ref)
        state.audit.record("validate", who=call.principal.id, what=None, outcome="failure",
                           detail=f"internal error (gitb), reference {ref}")
        return build_tar(TarContext(issues=[_not_checked("internal", lang, value=ref)], now=now,
                                    service_version=_version()))


async def _checked(state: ServiceState, call: Call, req: gitb_inputs.GitbRequest, lang: str,
                   now: dt.datetime, started: float) -> etree._Element:
    ref = req.content
    if ref is None:  # interpret() reports it as a Problem; kept closed here all the same
        raise _refusal("no-content", lang)
    try:
        if ref.kind == "uri":
            data, text, fetched_type = await _fetch(ref.text, state.config.gitb, lang)
        else:
            data, text = gitb_inputs.decode_content(ref)
            fetched_type = None
    except gitb_inputs.ContentError as exc:
        raise _NotChecked([_problem_issue(exc.problem, lang)]) from None
    content_format = req.content_format or _format_of(ref.mime_type) or _format_of(fetched_type)
    region = req.effective_region or call.region
    opts = core.options(state, replace(call, neg=replace(call.neg, lang=lang), region=region,
                                       today=req.today or call.today), with_registry=True)
    opts = replace(opts, profiles=opts.profiles + req.profiles, rulebook=req.rulebook)
    budget = _budget(state, started)
    try:
        job = run_in_threadpool(core.validate_sync, state, data, content_format, opts, False)
        report = await (asyncio.wait_for(job, budget) if budget is not None else job)
    except ParseError as exc:
        state.metrics.validations.labels("unparseable").inc()
        key = "too-costly" if exc.code == "too-costly" else "unparseable"
        text_msg = message(key, lang, detail=exc.message)
        issue = Issue(severity="fatal", code=exc.code or "invalid", expression="", source="service",
                      message=text_msg, message_id="becare-unparseable", line=exc.line, col=exc.col)
        raise _NotChecked([issue], content=text) from None
    except RegistryUnavailable:
        raise _NotChecked([_not_checked("registry-unavailable", lang)], content=text) from None
    except ServiceError:  # the validator is still loading (or failed to)
        raise _NotChecked([_not_checked("validator-unavailable", lang)], content=text) from None
    except TimeoutError:
        seconds = f"{state.config.request_timeout:g}"
        raise _NotChecked([_not_checked("timeout", lang, value=seconds)], content=text) from None
    issues = list(report.issues)
    found = gitb_inputs.expected_type_mismatch(report.resource, req.expected_type)
    if found is not None:
        issues.append(Issue(severity="error", code="invalid", expression="", source="service",
                            message=gitb_message("wrong-resource-type", lang, found=found,
                                                 expected=req.expected_type),
                            message_id="becare-gitb-wrong-resource-type"))
    core.record_verdict(state, call, report.resource, valid=not any(i.is_error for i in issues), via="gitb")
    outcome = operation_outcome(issues, rulebook_version=report.rulebook_version,
                                provenance=report.provenance)
    return build_tar(TarContext(
        issues=issues, now=now, fail_on=req.fail_on,
        content=text if req.add_input else None, content_mime=_mime(content_format, text),
        outcome=outcome, provenance=report.provenance, profile_id=req.validation_type,
        note=_note(report), service_version=_version(),
    ))


def _budget(state: ServiceState, started: float) -> float | None:
    """Seconds left for the validator, so that a slow one still gets a report out before the
    guard's request timeout answers for it."""
    total = state.config.request_timeout
    if total <= 0:
        return None
    margin = min(2.0, total * 0.1)
    return max(0.1, total - margin - (time.monotonic() - started))


def _format_of(media: str | None) -> str | None:
    if not media:
        return None
    try:
        return neg.request_format(media)
    except neg.UnsupportedMediaType:
        return None


def _mime(content_format: str | None, text: str) -> str:
    fmt = content_format or ("xml" if text.lstrip()[:1] == "<" else "json")
    return neg.XML_TYPE if fmt == "xml" else neg.JSON_TYPE


def _note(report: Any) -> str | None:
    parts = []
    if report.rulebook_version:
        parts.append(f"interfederal rulebook {report.rulebook_version}")
    if report.region:
        parts.append(f"region {report.region}")
    return "; ".join(parts) or None


def _version() -> str:
    from adapter import __version__

    return __version__


# -- embeddingMethod URI -----------------------------------------------------------------------------
async def _fetch(url: str, config: GitbConfig, lang: str) -> tuple[bytes, str, str | None]:
    """(bytes, text, media type) of an allowed URI; every redirect must be allowed too."""
    shown = url[:200]
    if not allowed(url, config.fetch_allow):
        raise _refusal("uri-not-allowed", lang, value=shown)

    def failed(detail: str) -> _NotChecked:
        return _refusal("uri-failed", lang, value=shown, detail=detail)

    headers = {"Accept": "application/fhir+json, application/fhir+xml;q=0.9, */*;q=0.1"}
    try:
        async with httpx.AsyncClient(follow_redirects=False, timeout=config.fetch_timeout) as client:
            for _hop in range(_MAX_REDIRECTS + 1):
                async with client.stream("GET", url, headers=headers) as resp:
                    if resp.is_redirect:
                        url = urljoin(url, resp.headers.get("location", ""))
                        if not allowed(url, config.fetch_allow):
                            raise _refusal("uri-not-allowed", lang, value=url[:200])
                        continue
                    if resp.status_code != 200:
                        raise failed(f"HTTP {resp.status_code}")
                    raw = await _read_bounded(resp, config.fetch_max_bytes, shown, lang)
                    media = resp.headers.get("content-type")
                    charset = resp.charset_encoding
                    data, text = gitb_inputs.decode_bytes(raw, charset, "contentToValidate")
                    return data, text, media
    except httpx.TimeoutException:
        raise failed(f"no answer within {config.fetch_timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise failed(type(exc).__name__) from None
    raise failed(f"more than {_MAX_REDIRECTS} redirects")


async def _read_bounded(resp: httpx.Response, limit: int, shown: str, lang: str) -> bytes:
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _refusal("uri-too-large", lang, value=shown, limit=str(limit))
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise _refusal("uri-too-large", lang, value=shown, limit=str(limit))
        chunks.append(chunk)
    return b"".join(chunks)
