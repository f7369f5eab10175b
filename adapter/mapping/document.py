"""Reading a care situation document: JSON or YAML in, a checked ``CareSituation`` out.

Every problem is reported at once, each with the JSON pointer of where it is, so a vendor fixes
a document in one pass. Schema errors come from the Pydantic models; the cross-reference checks
(ids that must resolve, roles only some parties can hold) live here because a JSON Schema
cannot express them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from adapter.mapping.model import PERSON, CareSituation

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster


@dataclass(frozen=True)
class DocumentProblem:
    pointer: str  # RFC 6901 JSON pointer into the input ("" = the whole document)
    message: str

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


class DocumentError(Exception):
    """The input is not a usable care situation document; ``problems`` says every reason."""

    def __init__(self, problems: list[DocumentProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems[:3]))
        self.problems = problems


def pointer(loc: tuple[Any, ...] | list[Any]) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in loc)


def parse_data(data: bytes | str, format: str | None = None) -> Any:
    """JSON or YAML text to Python values (``format``: "json", "yaml" or None to tell by the text)."""
    if isinstance(data, bytes):
        if len(data) > MAX_DOCUMENT_BYTES:
            raise DocumentError([DocumentProblem("", "the document is larger than 10 MB")])
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DocumentError([DocumentProblem("", f"not UTF-8 text (byte {exc.start})")]) from None
    text = data
    if format == "json" or (format is None and text.lstrip().startswith(("{", "["))):
        # text that starts like JSON is meant as JSON: its error is the useful one
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise DocumentError(
                [DocumentProblem("", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")]
            ) from None
    try:
        return yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise DocumentError([DocumentProblem("", f"invalid YAML{where}: {problem}")]) from None


_PLAIN = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field",
}


def _message(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    if kind in _PLAIN:
        return _PLAIN[kind]
    if kind == "literal_error":
        expected = (err.get("ctx") or {}).get("expected", "")
        return f"{err.get('input')!r} is not allowed here; expected {expected}"
    if kind == "string_pattern_mismatch":
        return f"{err.get('input')!r} is not well formed ({err['msg'].lower()})"
    msg = str(err.get("msg", "invalid value"))
    return msg.removeprefix("Value error, ")


def validate(data: Any) -> CareSituation:
    """Python values to a checked document, or DocumentError with every problem."""
    if not isinstance(data, dict):
        raise DocumentError([DocumentProblem("", "the document must be an object (a mapping)")])
    try:
        doc = CareSituation.model_validate(data)
    except ValidationError as exc:
        problems = [DocumentProblem(pointer(e["loc"]), _message(e)) for e in exc.errors()]
        raise DocumentError(problems) from None
    problems = list(check_references(doc))
    if problems:
        raise DocumentError(problems)
    return doc


def load_document(data: bytes | str, format: str | None = None) -> CareSituation:
    return validate(parse_data(data, format))


def check_references(doc: CareSituation) -> Iterator[DocumentProblem]:
    """Cross-reference checks: every id resolves, ids are unique, roles fit the party."""
    kinds: dict[str, str] = {PERSON: "person"}

    def declare(kind: str, key: str, where: str) -> Iterator[DocumentProblem]:
        if key == PERSON:
            yield DocumentProblem(where, '"person" is reserved for the person')
        elif key in kinds:
            yield DocumentProblem(where, f"the id {key!r} is already used by another party")
        else:
            kinds[key] = kind

    if doc.representative:
        yield from declare("related", doc.representative.id, "/representative/id")
    for i, ic in enumerate(doc.informal_caregivers):
        yield from declare("related", ic.id, f"/informal_caregivers/{i}/id")
    for i, org in enumerate(doc.organisations):
        yield from declare("organisation", org.id, f"/organisations/{i}/id")
    for i, pro in enumerate(doc.professionals):
        yield from declare("professional", pro.id, f"/professionals/{i}/id")

    def party(
        ref: str | None, where: str, allowed: tuple[str, ...] | None = None
    ) -> Iterator[DocumentProblem]:
        if ref is None:
            return
        kind = kinds.get(ref)
        if kind is None:
            yield DocumentProblem(where, f"{ref!r} is not the person nor a party of this document")
        elif allowed and kind not in allowed:
            yield DocumentProblem(where, f"{ref!r} is a {kind}; expected {' or '.join(allowed)}")

    org_ids = {o.id for o in doc.organisations}
    names_by_nihdi: dict[str, Any] = {}
    for i, pro in enumerate(doc.professionals):
        if pro.organisation is not None and pro.organisation not in org_ids:
            yield DocumentProblem(
                f"/professionals/{i}/organisation", f"no organisation has the id {pro.organisation!r}"
            )
        seen = names_by_nihdi.setdefault(pro.nihdi, pro.name) if pro.nihdi else pro.name
        if seen != pro.name:
            yield DocumentProblem(
                f"/professionals/{i}/name", "another professional with the same NIHDI number has another name"
            )

    members: dict[str, set[str]] = {}
    lay_coordinator = None  # in FHIR, the first lay member with role care-coordinator is the coordinator
    for i, member in enumerate(doc.care_team.members):
        yield from party(member.party, f"/care_team/members/{i}/party")
        if member.party in members:
            yield DocumentProblem(
                f"/care_team/members/{i}/party", "this party is already a member; list all its roles once"
            )
        members[member.party] = set(member.roles)
        if (
            lay_coordinator is None
            and "care-coordinator" in member.roles
            and kinds.get(member.party) in ("person", "related")
        ):
            lay_coordinator = member.party

    yield from _unique((e.id for e in doc.episodes), "/episodes/{}/id")
    for i, ep in enumerate(doc.episodes):
        base = f"/episodes/{i}"
        case_management = ep.type == "case-management"
        if case_management and ep.coordinator is not None:
            yield DocumentProblem(
                f"{base}/coordinator", "a case-management episode has a case_manager, not a coordinator"
            )
        if not case_management and ep.case_manager is not None:
            yield DocumentProblem(f"{base}/case_manager", "only a case-management episode has a case_manager")
        if not case_management and ep.triggers:
            yield DocumentProblem(f"{base}/triggers", "start triggers belong to case management only")
        yield from party(ep.case_manager, f"{base}/case_manager", ("professional",))
        yield from party(ep.coordinator, f"{base}/coordinator", ("professional", "person", "related"))
        if not case_management and kinds.get(ep.coordinator or "") != "professional":
            yield from _lay_coordinator(ep.coordinator, lay_coordinator, f"{base}/coordinator")
        yield from party(ep.requested_by, f"{base}/requested_by")
        if ep.managing_organisation is not None and ep.managing_organisation not in org_ids:
            yield DocumentProblem(
                f"{base}/managing_organisation", f"no organisation has the id {ep.managing_organisation!r}"
            )

    goal_ids: set[str] = set()
    if doc.care_plan:
        plan = doc.care_plan
        yield from party(plan.author, "/care_plan/author")
        yield from _unique((g.id for g in plan.goals), "/care_plan/goals/{}/id")
        goal_ids = {g.id for g in plan.goals}
        for i, goal in enumerate(plan.goals):
            yield from party(
                goal.expressed_by, f"/care_plan/goals/{i}/expressed_by", ("person", "related", "professional")
            )

    yield from _unique((t.id for t in doc.tasks), "/tasks/{}/id")
    for i, task in enumerate(doc.tasks):
        yield from party(task.owner, f"/tasks/{i}/owner")
        if task.goal is not None and task.goal not in goal_ids:
            yield DocumentProblem(f"/tasks/{i}/goal", f"the care plan has no goal with the id {task.goal!r}")

    yield from _unique((c.id for c in doc.consents), "/consents/{}/id")
    for i, consent in enumerate(doc.consents):
        yield from party(consent.given_by, f"/consents/{i}/given_by", ("person", "related"))
        yield from party(consent.grantee, f"/consents/{i}/grantee")

    yield from _unique((a.id for a in doc.assessments), "/assessments/{}/id")
    for i, assessment in enumerate(doc.assessments):
        yield from party(assessment.performer, f"/assessments/{i}/performer")
        if assessment.evaluation_id is not None and not assessment.instrument.startswith("belrai-"):
            yield DocumentProblem(
                f"/assessments/{i}/evaluation_id", "only BelRAI assessments have an evaluation id"
            )


def _lay_coordinator(named: str | None, in_team: str | None, where: str) -> Iterator[DocumentProblem]:
    """A coordinator who is the person or an informal caregiver exists in FHIR only as a team
    role, so the document must say the same thing in both places."""
    if named == in_team:
        return
    if in_team is None:
        yield DocumentProblem(
            where,
            "a coordinator who is the person or an informal caregiver must be a care-team member "
            "with role care-coordinator",
        )
    elif named is None:
        yield DocumentProblem(
            where, f"the care team names {in_team!r} care coordinator: set coordinator to {in_team!r}"
        )
    else:
        yield DocumentProblem(
            where, f"{in_team!r} is the first lay care-team member with role care-coordinator, not {named!r}"
        )


def _unique(ids: Iterator[str] | Any, template: str) -> Iterator[DocumentProblem]:
    seen: set[str] = set()
    for i, key in enumerate(ids):
        if key in seen:
            yield DocumentProblem(template.format(i), f"the id {key!r} is used twice")
        seen.add(key)
