"""The service's own error messages in the four languages of Belgium's care sector.

Validation findings come translated from the validator; these cover what happens before or
around it (bad media type, too large, rate limited...), so a French-speaking vendor gets one
language throughout.
"""

from __future__ import annotations

_MESSAGES: dict[str, dict[str, str]] = {
    "unsupported-media-type": {
        "en": "Unsupported media type {media}: send application/fhir+json or application/fhir+xml.",
        "fr": "Type de média non pris en charge {media} : "
        "envoyez application/fhir+json ou application/fhir+xml.",
        "nl": "Niet-ondersteund mediatype {media}: stuur application/fhir+json of application/fhir+xml.",
        "de": "Nicht unterstützter Medientyp {media}: "
        "senden Sie application/fhir+json oder application/fhir+xml.",
    },
    "bad-format": {
        "en": "Unsupported _format {value}: use json or xml.",
        "fr": "_format non pris en charge {value} : utilisez json ou xml.",
        "nl": "Niet-ondersteund _format {value}: gebruik json of xml.",
        "de": "Nicht unterstütztes _format {value}: verwenden Sie json oder xml.",
    },
    "too-large": {
        "en": "The request body is larger than the limit of {limit} bytes.",
        "fr": "Le corps de la requête dépasse la limite de {limit} octets.",
        "nl": "De inhoud van het verzoek is groter dan de limiet van {limit} bytes.",
        "de": "Der Anfrageinhalt überschreitet die Grenze von {limit} Bytes.",
    },
    "too-costly": {
        "en": "The content is too complex to process: {detail}",
        "fr": "Le contenu est trop complexe à traiter : {detail}",
        "nl": "De inhoud is te complex om te verwerken: {detail}",
        "de": "Der Inhalt ist zu komplex für die Verarbeitung: {detail}",
    },
    "unparseable": {
        "en": "The content cannot be parsed: {detail}",
        "fr": "Le contenu ne peut pas être analysé : {detail}",
        "nl": "De inhoud kan niet worden gelezen: {detail}",
        "de": "Der Inhalt kann nicht gelesen werden: {detail}",
    },
    "empty-body": {
        "en": "The request body is empty.",
        "fr": "Le corps de la requête est vide.",
        "nl": "De inhoud van het verzoek is leeg.",
        "de": "Der Anfrageinhalt ist leer.",
    },
    "bad-region": {
        "en": "Unknown region {value}: use flanders, wallonia, brussels or german-speaking.",
        "fr": "Région inconnue {value} : utilisez flanders, wallonia, brussels ou german-speaking.",
        "nl": "Onbekende regio {value}: gebruik flanders, wallonia, brussels of german-speaking.",
        "de": "Unbekannte Region {value}: verwenden Sie flanders, wallonia, brussels oder german-speaking.",
    },
    "bad-today": {
        "en": "Invalid today {value}: use a date YYYY-MM-DD, on $validate only.",
        "fr": "Paramètre today invalide {value} : utilisez une date AAAA-MM-JJ, sur $validate uniquement.",
        "nl": "Ongeldige today {value}: gebruik een datum JJJJ-MM-DD, alleen bij $validate.",
        "de": "Ungültiges today {value}: verwenden Sie ein Datum JJJJ-MM-TT, nur bei $validate.",
    },
    "bad-parameters": {
        "en": "The Parameters resource must carry the content to validate in a 'resource' parameter.",
        "fr": "La ressource Parameters doit contenir le contenu à valider dans un paramètre 'resource'.",
        "nl": "De Parameters-resource moet de te valideren inhoud in een parameter 'resource' bevatten.",
        "de": "Die Parameters-Ressource muss den zu prüfenden Inhalt im Parameter 'resource' enthalten.",
    },
    "not-a-bundle": {
        "en": "Only a Bundle can be accepted for forwarding, not {value}.",
        "fr": "Seul un Bundle peut être accepté pour transmission, pas {value}.",
        "nl": "Alleen een Bundle kan worden aanvaard om door te sturen, geen {value}.",
        "de": "Nur ein Bundle kann zur Weiterleitung angenommen werden, nicht {value}.",
    },
    "not-accepted": {
        "en": "The content has errors and was not accepted; nothing was forwarded.",
        "fr": "Le contenu comporte des erreurs et n'a pas été accepté ; rien n'a été transmis.",
        "nl": "De inhoud bevat fouten en werd niet aanvaard; er werd niets doorgestuurd.",
        "de": "Der Inhalt enthält Fehler und wurde nicht angenommen; nichts wurde weitergeleitet.",
    },
    "identifier-reused": {
        "en": "A different bundle was already accepted with this Bundle.identifier (delivery {value}); "
        "give the new bundle its own identifier.",
        "fr": "Un autre bundle a déjà été accepté avec ce Bundle.identifier (livraison {value}) ; "
        "donnez au nouveau bundle son propre identifiant.",
        "nl": "Een andere bundle werd al aanvaard met deze Bundle.identifier (levering {value}); "
        "geef de nieuwe bundle een eigen identifier.",
        "de": "Ein anderes Bundle wurde bereits mit diesem Bundle.identifier angenommen "
        "(Zustellung {value}); geben Sie dem neuen Bundle einen eigenen Identifier.",
    },
    "accepted": {
        "en": "Accepted for delivery as {value}.",
        "fr": "Accepté pour livraison sous {value}.",
        "nl": "Aanvaard voor levering als {value}.",
        "de": "Zur Zustellung angenommen als {value}.",
    },
    "unauthenticated": {
        "en": "Authentication required: send an API key (X-API-Key) or a bearer token.",
        "fr": "Authentification requise : envoyez une clé d'API (X-API-Key) ou un jeton bearer.",
        "nl": "Authenticatie vereist: stuur een API-sleutel (X-API-Key) of een bearer-token.",
        "de": "Authentifizierung erforderlich: "
        "senden Sie einen API-Schlüssel (X-API-Key) oder ein Bearer-Token.",
    },
    "forbidden": {
        "en": "These credentials do not allow {value}.",
        "fr": "Ces identifiants ne permettent pas {value}.",
        "nl": "Deze aanmeldgegevens laten {value} niet toe.",
        "de": "Diese Zugangsdaten erlauben {value} nicht.",
    },
    "audit-needs-auth": {
        "en": "The audit trail is only served when authentication is configured.",
        "fr": "La piste d'audit n'est servie que lorsque l'authentification est configurée.",
        "nl": "Het auditspoor wordt alleen geleverd als authenticatie is geconfigureerd.",
        "de": "Das Audit-Protokoll wird nur bei konfigurierter Authentifizierung ausgeliefert.",
    },
    "rate-limited": {
        "en": "Too many requests; retry after {value} seconds.",
        "fr": "Trop de requêtes ; réessayez dans {value} secondes.",
        "nl": "Te veel verzoeken; probeer opnieuw over {value} seconden.",
        "de": "Zu viele Anfragen; versuchen Sie es in {value} Sekunden erneut.",
    },
    "timeout": {
        "en": "The request took longer than {value} seconds and was abandoned.",
        "fr": "La requête a dépassé {value} secondes et a été abandonnée.",
        "nl": "Het verzoek duurde langer dan {value} seconden en werd afgebroken.",
        "de": "Die Anfrage dauerte länger als {value} Sekunden und wurde abgebrochen.",
    },
    "not-found": {
        "en": "Not found: {value}",
        "fr": "Introuvable : {value}",
        "nl": "Niet gevonden: {value}",
        "de": "Nicht gefunden: {value}",
    },
    "method-not-allowed": {
        "en": "Method not allowed: {value}",
        "fr": "Méthode non autorisée : {value}",
        "nl": "Methode niet toegestaan: {value}",
        "de": "Methode nicht erlaubt: {value}",
    },
    "bad-request": {
        "en": "Bad request: {value}",
        "fr": "Requête incorrecte : {value}",
        "nl": "Ongeldig verzoek: {value}",
        "de": "Ungültige Anfrage: {value}",
    },
    "unavailable": {
        "en": "Service unavailable: {value}",
        "fr": "Service indisponible : {value}",
        "nl": "Dienst niet beschikbaar: {value}",
        "de": "Dienst nicht verfügbar: {value}",
    },
    "internal": {
        "en": "Internal error (reference {value}); the request was not processed.",
        "fr": "Erreur interne (référence {value}) ; la requête n'a pas été traitée.",
        "nl": "Interne fout (referentie {value}); het verzoek werd niet verwerkt.",
        "de": "Interner Fehler (Referenz {value}); die Anfrage wurde nicht verarbeitet.",
    },
}


def message(key: str, lang: str, **values: object) -> str:
    """The message ``key`` in ``lang`` (English when that language lacks it)."""
    texts = _MESSAGES[key]
    template = texts.get(lang) or texts["en"]
    return template.format(**{k: str(v) for k, v in values.items()})


def keys() -> frozenset[str]:
    return frozenset(_MESSAGES)


def languages_of(key: str) -> frozenset[str]:
    return frozenset(_MESSAGES[key])
