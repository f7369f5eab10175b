"""The slice of the FHIR R4 type system the parser and the writers need.

XML does not say whether an element repeats or what primitive type it carries, and the XML
writer needs the element order; both come from the core StructureDefinitions vendored under
``profiles/fhir-r4-core``, so the element tables are never hand-maintained (the resource type
names JSON needs are also kept as a constant, held equal to the model's by a test). The file is
read once per process (``core_model()`` is cached).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from adapter.datafiles import data_dir

CORE_FILE = ("fhir-r4-core", "structuredefinitions.json.gz")

FHIRPATH_SYSTEM = "http://hl7.org/fhirpath/System."
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"

# FHIRPath system types used for the ``value`` of primitives and for ``id`` elements.
_SYSTEM_TYPES = {
    "String": "string",
    "Boolean": "boolean",
    "Integer": "integer",
    "Decimal": "decimal",
    "Date": "date",
    "DateTime": "dateTime",
    "Time": "time",
}

BOOLEAN_TYPES = frozenset({"boolean"})
INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt", "integer64"})
DECIMAL_TYPES = frozenset({"decimal"})


@dataclass(frozen=True, slots=True)
class ElementInfo:
    """One child element of a type or backbone element."""

    name: str  # base name, ``value`` for ``value[x]``
    path: str  # path in its StructureDefinition, e.g. ``Observation.value[x]``
    types: tuple[str, ...]  # type codes (``Quantity``, ``string``, ``Resource``...)
    repeats: bool  # max != "1": an array in JSON
    choice: bool
    xml_attr: bool  # ``id`` of elements, ``url`` of Extension
    children: str | None  # path whose children this element has (backbone / contentReference)

    def type_for(self, concrete: str) -> str | None:
        """The type a concrete JSON/XML name selects (``valueQuantity`` -> ``Quantity``)."""
        if not self.choice:
            return self.types[0] if self.types else None
        suffix = concrete[len(self.name) :]
        for t in self.types:
            if t[:1].upper() + t[1:] == suffix:
                return t
        return None


@dataclass
class TypeModel:
    resource_types: frozenset[str]
    primitive_types: frozenset[str]
    complex_types: frozenset[str]
    # parent path -> ordered child elements
    children: dict[str, tuple[ElementInfo, ...]] = field(default_factory=dict)
    # parent path -> concrete name (``valueQuantity``) -> (element, type)
    names: dict[str, dict[str, tuple[ElementInfo, str | None]]] = field(default_factory=dict)

    def lookup(self, parent: str, name: str) -> tuple[ElementInfo, str | None] | None:
        table = self.names.get(parent)
        return table.get(name) if table is not None else None

    def child_path(self, info: ElementInfo, type_code: str | None) -> str | None:
        """The parent path to use for the children of an element of ``type_code``."""
        if info.children is not None:
            return info.children
        if type_code is not None and type_code in self.names:
            return type_code
        return None

    def is_primitive(self, type_code: str | None) -> bool:
        return type_code is not None and type_code in self.primitive_types


def _type_code(t: dict[str, Any]) -> str:
    code = str(t.get("code", ""))
    if code.startswith(FHIRPATH_SYSTEM):
        for ext in t.get("extension", ()):
            if ext.get("url") == FHIR_TYPE_EXT and ext.get("valueUrl"):
                return str(ext["valueUrl"])
        return _SYSTEM_TYPES.get(code[len(FHIRPATH_SYSTEM) :], "string")
    return code


def build_model(definitions: Iterable[dict[str, Any]]) -> TypeModel:
    """Index StructureDefinitions (specializations only; constraints such as SimpleQuantity
    share the element tables of their base type)."""
    resource_types: set[str] = set()
    primitives: set[str] = set()
    complex_types: set[str] = set()
    children: dict[str, list[ElementInfo]] = {}
    for sd in definitions:
        if sd.get("resourceType") != "StructureDefinition" or sd.get("derivation") == "constraint":
            continue
        kind = sd.get("kind")
        type_name = sd.get("type") or sd.get("id")
        if not isinstance(type_name, str) or kind == "logical":
            continue
        if kind == "resource":
            if not sd.get("abstract"):
                resource_types.add(type_name)
        elif kind == "primitive-type":
            primitives.add(type_name)
            continue  # primitives are handled by the value/id/extension convention
        elif kind == "complex-type":
            complex_types.add(type_name)
        elements = (sd.get("snapshot") or {}).get("element") or []
        parents = {str(e.get("path", "")).rpartition(".")[0] for e in elements}
        for el in elements:
            path = el.get("path")
            if not isinstance(path, str) or "." not in path:
                continue
            parent, _, last = path.rpartition(".")
            choice = last.endswith("[x]")
            name = last[:-3] if choice else last
            types = tuple(_type_code(t) for t in el.get("type") or ())
            ref = el.get("contentReference")
            sub: str | None = None
            if isinstance(ref, str) and ref.startswith("#"):
                sub = ref[1:]
            elif path in parents:
                sub = path
            info = ElementInfo(
                name=name,
                path=path,
                types=types,
                repeats=str(el.get("max", "1")) != "1",
                choice=choice,
                xml_attr="xmlAttr" in (el.get("representation") or ()),
                children=sub,
            )
            children.setdefault(parent, []).append(info)
    model = TypeModel(
        resource_types=frozenset(resource_types),
        primitive_types=frozenset(primitives),
        complex_types=frozenset(complex_types),
    )
    for parent, infos in children.items():
        model.children[parent] = tuple(infos)
        table: dict[str, tuple[ElementInfo, str | None]] = {}
        for info in infos:
            if info.choice:
                for t in info.types:
                    table[info.name + t[:1].upper() + t[1:]] = (info, t)
            else:
                table[info.name] = (info, info.types[0] if info.types else None)
        model.names[parent] = table
    return model


def _core_path() -> Path:
    return data_dir("profiles").joinpath(*CORE_FILE)


# The non-abstract resource types of FHIR R4 (4.0.1, a frozen release), as ``core_model()`` derives
# them from the core StructureDefinitions (tests/test_fhirio_speed.py holds the two equal). Reading
# JSON needs only these names, and building the whole model costs ~70 ms at the start of a process.
R4_RESOURCE_TYPES = frozenset(
    {
        "Account", "ActivityDefinition", "AdverseEvent", "AllergyIntolerance", "Appointment",
        "AppointmentResponse", "AuditEvent", "Basic", "Binary", "BiologicallyDerivedProduct",
        "BodyStructure", "Bundle", "CapabilityStatement", "CarePlan", "CareTeam", "CatalogEntry",
        "ChargeItem", "ChargeItemDefinition", "Claim", "ClaimResponse", "ClinicalImpression",
        "CodeSystem", "Communication", "CommunicationRequest", "CompartmentDefinition", "Composition",
        "ConceptMap", "Condition", "Consent", "Contract", "Coverage", "CoverageEligibilityRequest",
        "CoverageEligibilityResponse", "DetectedIssue", "Device", "DeviceDefinition", "DeviceMetric",
        "DeviceRequest", "DeviceUseStatement", "DiagnosticReport", "DocumentManifest",
        "DocumentReference", "EffectEvidenceSynthesis", "Encounter", "Endpoint", "EnrollmentRequest",
        "EnrollmentResponse", "EpisodeOfCare", "EventDefinition", "Evidence", "EvidenceVariable",
        "ExampleScenario", "ExplanationOfBenefit", "FamilyMemberHistory", "Flag", "Goal",
        "GraphDefinition", "Group", "GuidanceResponse", "HealthcareService", "ImagingStudy",
        "Immunization", "ImmunizationEvaluation", "ImmunizationRecommendation", "ImplementationGuide",
        "InsurancePlan", "Invoice", "Library", "Linkage", "List", "Location", "Measure", "MeasureReport",
        "Media", "Medication", "MedicationAdministration", "MedicationDispense", "MedicationKnowledge",
        "MedicationRequest", "MedicationStatement", "MedicinalProduct", "MedicinalProductAuthorization",
        "MedicinalProductContraindication", "MedicinalProductIndication", "MedicinalProductIngredient",
        "MedicinalProductInteraction", "MedicinalProductManufactured", "MedicinalProductPackaged",
        "MedicinalProductPharmaceutical", "MedicinalProductUndesirableEffect", "MessageDefinition",
        "MessageHeader", "MolecularSequence", "NamingSystem", "NutritionOrder", "Observation",
        "ObservationDefinition", "OperationDefinition", "OperationOutcome", "Organization",
        "OrganizationAffiliation", "Parameters", "Patient", "PaymentNotice", "PaymentReconciliation",
        "Person", "PlanDefinition", "Practitioner", "PractitionerRole", "Procedure", "Provenance",
        "Questionnaire", "QuestionnaireResponse", "RelatedPerson", "RequestGroup", "ResearchDefinition",
        "ResearchElementDefinition", "ResearchStudy", "ResearchSubject", "RiskAssessment",
        "RiskEvidenceSynthesis", "Schedule", "SearchParameter", "ServiceRequest", "Slot", "Specimen",
        "SpecimenDefinition", "StructureDefinition", "StructureMap", "Subscription", "Substance",
        "SubstanceNucleicAcid", "SubstancePolymer", "SubstanceProtein", "SubstanceReferenceInformation",
        "SubstanceSourceMaterial", "SubstanceSpecification", "SupplyDelivery", "SupplyRequest", "Task",
        "TerminologyCapabilities", "TestReport", "TestScript", "ValueSet", "VerificationResult",
        "VisionPrescription",
    }
)  # fmt: skip


def resource_types() -> frozenset[str]:
    """The resource type names, without building the model (which XML needs, JSON does not)."""
    return R4_RESOURCE_TYPES


@lru_cache(maxsize=1)
def core_model() -> TypeModel:
    """The R4 core model, loaded once per process."""
    with gzip.open(_core_path(), "rt", encoding="utf-8") as fh:
        bundle = json.load(fh)
    definitions = (e.get("resource") or {} for e in bundle.get("entry") or ())
    return build_model(definitions)

