"""The care situation document: a neutral description of one person's coordinated situation.

Systems that do not speak FHIR describe people, roles, goals and tasks; the mapper turns this
into a becare Bundle. Parties are referred to by the ``id`` the sending system gives them
(``"person"`` is the person themself), so a document reads like the vendor's own data.
Coded fields are closed enumerations taken from the mapping tables (``mappings/*.yaml``), so the
published JSON Schema lists the allowed codes and a typo is reported where it is made.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from adapter.mapping.tables import tables

_T = tables()


def _codes(values: Any) -> Any:
    """A Literal of the table's codes: the schema shows them as an enum."""
    return Literal[tuple(values)]  # type: ignore[valid-type]


CareRole = _codes(_T.roles)
Profession = _codes(_T.professions)
Region = _codes(_T.regions)
Trigger = _codes(_T.triggers)
TaskType = _codes(_T.task_types)
TaskStatus = _codes(_T.task_statuses)
EpisodeType = _codes(_T.episode_types)
EpisodeStatus = _codes(_T.raw["episodes"]["statuses"])
GoalCategory = _codes(_T.goal_categories)
GoalStatus = _codes(_T.raw["goals"]["statuses"])
ConsentCategory = _codes(_T.consent_categories)
ConsentStatus = _codes(_T.raw["consents"]["statuses"])
Relationship = _codes(_T.relationships)
Instrument = _codes(_T.instruments)

PERSON = "person"

Key = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
    Field(description="An id given by the sending system, unique within its kind in this document."),
]
PartyRef = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
    Field(
        description='"person" for the person, else the id of the representative, an informal '
        "caregiver, a professional or an organisation."
    ),
]
Ssin = Annotated[str, StringConstraints(pattern=r"^\d{11}$"), Field(description="INSZ/NISS: 11 digits.")]
Nihdi = Annotated[
    str, StringConstraints(pattern=r"^(\d{8}|\d{11})$"), Field(description="RIZIV/INAMI number: 11 digits.")
]
Cbe = Annotated[
    str, StringConstraints(pattern=r"^[01]\d{9}$"), Field(description="KBO/BCE enterprise number: 10 digits.")
]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
Phone = Annotated[str, StringConstraints(pattern=r"^\+?[0-9 ./()-]{6,20}$")]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
SystemUri = Annotated[
    str,
    StringConstraints(pattern=r"^(https?://[^\s|]+|urn:[A-Za-z0-9][A-Za-z0-9-]*:[^\s|]+)$"),
    Field(
        description="The namespace of the sending system's ids (an http(s) URL or a URN); it becomes "
        "the identifier system of every resource the document describes."
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class Name(_Model):
    family: Text
    given: list[Text] = Field(default_factory=list)
    prefix: list[Text] = Field(default_factory=list)


class Address(_Model):
    lines: list[Text] = Field(default_factory=list, description="Street, house number, box.")
    postal_code: Annotated[str, StringConstraints(pattern=r"^\d{4}$")]
    city: Text | None = None
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] = "BE"


class Period(_Model):
    start: dt.date
    end: dt.date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.end is not None and self.end < self.start:
            raise ValueError("the period ends before it starts")
        return self


class Person(_Model):
    """The person who needs care and support."""

    ssin: Ssin
    name: Name
    gender: Literal["male", "female", "other", "unknown"] | None = None
    birth_date: dt.date | None = None
    address: Address | None = None
    language: Literal["nl", "fr", "de", "en"] | None = Field(None, description="Preferred language.")
    phone: Phone | None = None


class RelatedParty(_Model):
    """The representative or an informal caregiver (mantelzorger, aidant proche)."""

    id: Key
    name: Name
    relationship: Relationship
    ssin: Ssin | None = None
    phone: Phone | None = None


class Organisation(_Model):
    id: Key
    name: Text
    cbe: Cbe | None = None
    nihdi: Nihdi | None = None


class Professional(_Model):
    """A professional in one profession (one PractitionerRole). The NIHDI number names the person;
    some professions (social workers) have none."""

    id: Key
    nihdi: Nihdi | None = None
    name: Name
    profession: Profession = Field(description="A CD-HCPARTY `pers*` code.")
    organisation: Key | None = Field(None, description="The id of an organisation of this document.")
    phone: Phone | None = None
    email: Email | None = None


class TeamMember(_Model):
    party: PartyRef
    roles: list[CareRole] = Field(min_length=1)


class CareTeam(_Model):
    id: Key
    name: Text | None = None
    members: list[TeamMember] = Field(min_length=1, description="At least the person (IC-TEAM-1).")


class Episode(_Model):
    """One care-coordination or case-management episode."""

    id: Key
    type: EpisodeType
    status: EpisodeStatus = "active"
    coordinator: PartyRef | None = Field(
        None,
        description="Care coordination: the coordinator. A professional becomes "
        "EpisodeOfCare.careManager; the person or an informal caregiver must be a care-team member "
        "with role care-coordinator.",
    )
    case_manager: PartyRef | None = Field(None, description="Case management: a professional.")
    triggers: list[Trigger] = Field(default_factory=list, description="Case management start triggers.")
    period: Period
    requested_by: PartyRef | None = Field(None, description="Who asked for it (becomes a referral).")
    managing_organisation: Key | None = None


class Goal(_Model):
    id: Key
    category: GoalCategory
    description: Text
    status: GoalStatus = "active"
    expressed_by: PartyRef | None = None
    target_date: dt.date | None = None


class CarePlan(_Model):
    id: Key
    title: Text | None = None
    status: Literal["draft", "active", "on-hold", "revoked", "completed"] = "active"
    period: Period | None = None
    author: PartyRef | None = None
    goals: list[Goal] = Field(default_factory=list)


class Task(_Model):
    id: Key
    type: TaskType
    status: TaskStatus = "planned"
    owner: PartyRef | None = None
    due: dt.date | None = None
    description: Text | None = None
    goal: Key | None = Field(None, description="The id of the care plan goal the task serves.")


class Consent(_Model):
    id: Key
    category: ConsentCategory
    status: ConsentStatus = "active"
    date: dt.date
    given_by: PartyRef = Field(PERSON, description="The person, or their representative.")
    grantee: PartyRef | None = Field(
        None, description="Who the agreement is given to (e.g. the coordinator)."
    )


class Assessment(_Model):
    """An assessment by reference (a BelRAI evaluation id) and/or by score."""

    id: Key
    instrument: Instrument
    date: dt.date
    evaluation_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")] | None = Field(
        None, description="The BelRAI evaluation id (BelRAI instruments only)."
    )
    score: Annotated[float, Field(allow_inf_nan=False)] | None = None
    performer: PartyRef | None = None


class CareSituation(_Model):
    """The whole document: one person's coordinated situation."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        coerce_numbers_to_str=True,
        title="becare care situation document",
        json_schema_extra={
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://becare.dev/schemas/care-situation.schema.json",
        },
    )

    version: Literal[1] = 1
    identifier_system: SystemUri
    region: Region | None = Field(None, description="Stated region; else the rulebook uses the postal code.")
    person: Person
    representative: RelatedParty | None = None
    informal_caregivers: list[RelatedParty] = Field(default_factory=list)
    organisations: list[Organisation] = Field(default_factory=list)
    professionals: list[Professional] = Field(default_factory=list)
    care_team: CareTeam
    episodes: list[Episode] = Field(min_length=1)
    care_plan: CarePlan | None = None
    tasks: list[Task] = Field(default_factory=list)
    consents: list[Consent] = Field(default_factory=list)
    assessments: list[Assessment] = Field(default_factory=list)
