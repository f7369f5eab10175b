"""What ``getModuleDefinition`` declares: becare's inputs and validation types.

The test bed reads this before calling ``validate``, to convert input types and to refuse a step
that lacks a required input. ``contentToValidate`` is therefore declared optional: eHealth's
fhir-itb test cases send the content as ``payload`` and would be refused before reaching becare
if it were required. A request with neither gets a FAILURE report saying so (``no-content``).
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from adapter.gitb.ns import CORE, VS

LANGUAGES = ("en", "fr", "nl", "de")
REGIONS = ("flanders", "wallonia", "brussels", "german-speaking")
MODULE_ID = "becare"


@dataclass(frozen=True)
class ValidationType:
    description: str
    rulebook: bool = True  # run the interfederal rulebook
    region: str | None = None  # the region it fixes (else: ``region`` input, ext-region, postal code)


VALIDATION_TYPES: dict[str, ValidationType] = {
    "full": ValidationType(
        "FHIR R4 structure, bindings and invariants, the declared and requested profiles, and the "
        "interfederal rulebook (the same verdict as POST /fhir/$validate)"
    ),
    "profiles": ValidationType(
        "FHIR R4 and the declared and requested profiles only, without the interfederal rulebook "
        "(for content that is not a becare care bundle)",
        rulebook=False,
    ),
    **{
        region: ValidationType(f"full, with the rules of region {region}", region=region)
        for region in REGIONS
    },
}
DEFAULT_TYPE = "full"


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    desc: str
    use: str = "O"


INPUTS: tuple[Param, ...] = (
    Param("contentToValidate", "string",
          "The FHIR R4 resource to validate, JSON or XML (required, unless given as payload)."),
    Param("embeddingMethod", "string",
          "How contentToValidate is given: STRING, BASE64 or URI (URL). Overrides the input's "
          "embeddingMethod attribute. A URI is fetched only if service.gitb.fetch_allow permits it."),
    Param("validationType", "string",
          "What to check: " + "; ".join(f"{k} = {v.description}" for k, v in VALIDATION_TYPES.items())
          + f". Default {DEFAULT_TYPE}."),
    Param("locale", "string", "Language of the report messages: en, fr, nl or de (fr-BE, nl_BE... too)."),
    Param("addInputToReport", "boolean",
          "Put the validated content in the report context as 'content' (default true)."),
    Param("includeContentInReport", "boolean", "Same as addInputToReport (HL7 validator name)."),
    Param("profiles", "string",
          "Canonical URLs of profiles to validate against in addition to meta.profile "
          "(canonical|version allowed), separated by commas or spaces, or a list."),
    Param("contentType", "string",
          "application/fhir+json or application/fhir+xml; by default the format is recognised."),
    Param("region", "string", "flanders, wallonia, brussels or german-speaking: the region whose rules apply "
          "(default: ext-region, else the person's postal code)."),
    Param("failOn", "string",
          "Lowest severity that makes the result FAILURE: error (default), warning or information. "
          "With error, warnings alone give WARNING."),
    Param("today", "string", "YYYY-MM-DD: the date the rules judge 'active' and 'planned' against."),
    Param("payload", "string", "Same as contentToValidate (eHealth fhir-itb name)."),
    Param("resource", "string",
          "eHealth fhir-itb: the resource type the content must be (e.g. Bundle); an error if it is not."),
)


def module_definition(version: str) -> etree._Element:
    """The ``vs:GetModuleDefinitionResponse`` element (``module`` unqualified, its content in core)."""
    response = etree.Element(f"{{{VS}}}GetModuleDefinitionResponse", nsmap={"vs": VS, "gitb": CORE})
    module = etree.SubElement(response, "module", id=MODULE_ID, operation="V")
    metadata = etree.SubElement(module, f"{{{CORE}}}metadata")
    etree.SubElement(metadata, f"{{{CORE}}}name").text = "becare FHIR validator"
    etree.SubElement(metadata, f"{{{CORE}}}version").text = version
    etree.SubElement(metadata, f"{{{CORE}}}description").text = (
        "FHIR R4 validation with the Belgian profiles (BeCore, Patient Care) and the interfederal "
        "rulebook for integrated care."
    )
    inputs = etree.SubElement(module, f"{{{CORE}}}inputs")
    for param in INPUTS:
        etree.SubElement(inputs, f"{{{CORE}}}param", name=param.name, type=param.type, use=param.use,
                         kind="SIMPLE", desc=param.desc)
    return response
