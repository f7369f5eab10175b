"""Renderers of validation reports: text for terminals, json (OperationOutcome), junit for CI."""

from adapter.output.render import render

__all__ = ["render"]
