"""The validation page served at ``/``: static HTML/JS/CSS plus the rule explanations it shows.

Kept out of ``adapter.service`` so the FHIR endpoints never depend on the page; the app only calls
``register(app)``.
"""

from adapter.web.routes import register

__all__ = ["register"]
