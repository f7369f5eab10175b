"""The validator's hot modules compiled with mypyc, used only when built from the current sources.

``loader`` decides and installs the import finder (``adapter/__init__.py`` calls it first);
``build`` compiles. See loader.py for why the compiled modules live apart from their sources.
"""

from adapter.native.loader import Status, install, status

__all__ = ["Status", "install", "status"]
