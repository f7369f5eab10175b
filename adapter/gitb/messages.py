"""The GITB service's own report texts (unusable inputs, a content that was not checked), in the
four languages of the report. Validation findings come translated from the validator."""

from __future__ import annotations

_MESSAGES: dict[str, dict[str, str]] = {
    "no-content": {
        "en": "No content to validate: send it in the input contentToValidate (or payload).",
        "fr": "Aucun contenu à valider : envoyez-le dans l'entrée contentToValidate (ou payload).",
        "nl": "Geen inhoud om te valideren: stuur ze in de invoer contentToValidate (of payload).",
        "de": "Kein zu validierender Inhalt: senden Sie ihn in der Eingabe contentToValidate (oder payload).",
    },
    "content-repeated": {
        "en": "The content was given more than once ({names}): send it in one input.",
        "fr": "Le contenu a été donné plusieurs fois ({names}) : envoyez-le dans une seule entrée.",
        "nl": "De inhoud werd meer dan eens gegeven ({names}): stuur ze in één invoer.",
        "de": "Der Inhalt wurde mehrfach angegeben ({names}): senden Sie ihn in einer Eingabe.",
    },
    "input-repeated": {
        "en": "The input {name} was given more than once: give it once.",
        "fr": "L'entrée {name} a été donnée plusieurs fois : donnez-la une seule fois.",
        "nl": "De invoer {name} werd meer dan eens gegeven: geef ze één keer.",
        "de": "Die Eingabe {name} wurde mehrfach angegeben: geben Sie sie nur einmal an.",
    },
    "input-not-text": {
        "en": "The input {name} must be a single text value.",
        "fr": "L'entrée {name} doit être une seule valeur texte.",
        "nl": "De invoer {name} moet één tekstwaarde zijn.",
        "de": "Die Eingabe {name} muss ein einzelner Textwert sein.",
    },
    "bad-choice": {
        "en": "Invalid value '{value}' for the input {name}: use {allowed}.",
        "fr": "Valeur '{value}' invalide pour l'entrée {name} : utilisez {allowed}.",
        "nl": "Ongeldige waarde '{value}' voor de invoer {name}: gebruik {allowed}.",
        "de": "Ungültiger Wert '{value}' für die Eingabe {name}: verwenden Sie {allowed}.",
    },
    "bad-validation-type": {
        "en": "Unknown validationType '{value}': use {allowed}.",
        "fr": "validationType '{value}' inconnu : utilisez {allowed}.",
        "nl": "Onbekend validationType '{value}': gebruik {allowed}.",
        "de": "Unbekannter validationType '{value}': verwenden Sie {allowed}.",
    },
    "region-conflict": {
        "en": "The input region '{region}' contradicts the validationType '{type}'.",
        "fr": "L'entrée region '{region}' contredit le validationType '{type}'.",
        "nl": "De invoer region '{region}' spreekt het validationType '{type}' tegen.",
        "de": "Die Eingabe region '{region}' widerspricht dem validationType '{type}'.",
    },
    "bad-today": {
        "en": "Invalid today '{value}': use a date YYYY-MM-DD.",
        "fr": "today '{value}' invalide : utilisez une date AAAA-MM-JJ.",
        "nl": "Ongeldige today '{value}': gebruik een datum JJJJ-MM-DD.",
        "de": "Ungültiges today '{value}': verwenden Sie ein Datum JJJJ-MM-TT.",
    },
    "bad-resource-type": {
        "en": "The input resource '{value}' is neither a resource type nor a resource.",
        "fr": "L'entrée resource '{value}' n'est ni un type de ressource ni une ressource.",
        "nl": "De invoer resource '{value}' is geen resourcetype en geen resource.",
        "de": "Die Eingabe resource '{value}' ist weder ein Ressourcentyp noch eine Ressource.",
    },
    "wrong-resource-type": {
        "en": "The content is a {found}, not the {expected} named by the input resource.",
        "fr": "Le contenu est un(e) {found}, pas le {expected} indiqué par l'entrée resource.",
        "nl": "De inhoud is een {found}, niet de {expected} die de invoer resource noemt.",
        "de": "Der Inhalt ist ein(e) {found}, nicht das in der Eingabe resource genannte {expected}.",
    },
    "bad-base64": {
        "en": "The input {name} is not valid BASE64.",
        "fr": "L'entrée {name} n'est pas du BASE64 valide.",
        "nl": "De invoer {name} is geen geldige BASE64.",
        "de": "Die Eingabe {name} ist kein gültiges BASE64.",
    },
    "bad-encoding": {
        "en": "The input {name} names an unknown character encoding '{value}'.",
        "fr": "L'entrée {name} indique un encodage de caractères inconnu '{value}'.",
        "nl": "De invoer {name} noemt een onbekende tekencodering '{value}'.",
        "de": "Die Eingabe {name} nennt eine unbekannte Zeichenkodierung '{value}'.",
    },
    "uri-not-allowed": {
        "en": "The URI {value} was not fetched: it is not allowed by service.gitb.fetch_allow "
        "in the service configuration. Send the content itself (STRING or BASE64).",
        "fr": "L'URI {value} n'a pas été récupérée : service.gitb.fetch_allow ne l'autorise pas "
        "dans la configuration du service. Envoyez le contenu lui-même (STRING ou BASE64).",
        "nl": "De URI {value} werd niet opgehaald: service.gitb.fetch_allow in de configuratie van de "
        "dienst staat ze niet toe. Stuur de inhoud zelf (STRING of BASE64).",
        "de": "Die URI {value} wurde nicht abgerufen: service.gitb.fetch_allow in der Konfiguration des "
        "Dienstes erlaubt sie nicht. Senden Sie den Inhalt selbst (STRING oder BASE64).",
    },
    "uri-failed": {
        "en": "The URI {value} could not be fetched: {detail}.",
        "fr": "L'URI {value} n'a pas pu être récupérée : {detail}.",
        "nl": "De URI {value} kon niet worden opgehaald: {detail}.",
        "de": "Die URI {value} konnte nicht abgerufen werden: {detail}.",
    },
    "uri-too-large": {
        "en": "The content at {value} is larger than the limit of {limit} bytes.",
        "fr": "Le contenu à {value} dépasse la limite de {limit} octets.",
        "nl": "De inhoud op {value} is groter dan de limiet van {limit} bytes.",
        "de": "Der Inhalt unter {value} überschreitet die Grenze von {limit} Bytes.",
    },
    "not-checked": {
        "en": "The content was not checked: {detail}. Do not take this as a validation result.",
        "fr": "Le contenu n'a pas été vérifié : {detail}. Ceci n'est pas un résultat de validation.",
        "nl": "De inhoud werd niet gecontroleerd: {detail}. Dit is geen validatieresultaat.",
        "de": "Der Inhalt wurde nicht geprüft: {detail}. Dies ist kein Validierungsergebnis.",
    },
    "internal": {
        "en": "internal error, reference {value}",
        "fr": "erreur interne, référence {value}",
        "nl": "interne fout, referentie {value}",
        "de": "interner Fehler, Referenz {value}",
    },
    "registry-unavailable": {
        "en": "the episode registry is unavailable (IC-ONE-1/2 cannot be judged); retry later",
        "fr": "le registre des épisodes est indisponible (IC-ONE-1/2 ne peuvent être jugées) ; "
        "réessayez plus tard",
        "nl": "het episoderegister is niet beschikbaar (IC-ONE-1/2 kunnen niet worden beoordeeld); "
        "probeer later opnieuw",
        "de": "das Episodenregister ist nicht verfügbar (IC-ONE-1/2 können nicht beurteilt werden); "
        "versuchen Sie es später erneut",
    },
    "validator-unavailable": {
        "en": "the validator is not ready yet; retry later",
        "fr": "le validateur n'est pas encore prêt ; réessayez plus tard",
        "nl": "de validator is nog niet klaar; probeer later opnieuw",
        "de": "der Validator ist noch nicht bereit; versuchen Sie es später erneut",
    },
    "timeout": {
        "en": "the validation took longer than {value} seconds and was abandoned",
        "fr": "la validation a dépassé {value} secondes et a été abandonnée",
        "nl": "de validatie duurde langer dan {value} seconden en werd afgebroken",
        "de": "die Validierung dauerte länger als {value} Sekunden und wurde abgebrochen",
    },
}


def message(key: str, lang: str, **values: object) -> str:
    """The message ``key`` in ``lang`` (English when that language lacks it)."""
    texts = _MESSAGES[key]
    return (texts.get(lang) or texts["en"]).format(**{k: str(v) for k, v in values.items()})


def keys() -> frozenset[str]:
    return frozenset(_MESSAGES)


def languages_of(key: str) -> frozenset[str]:
    return frozenset(_MESSAGES[key])
