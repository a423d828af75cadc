"""The package's version, in a leaf module: `gar_agent/__init__.py` loads the notebook API on first
use, so a module that imports the version from there would (to the import contract) import the API."""

__version__ = "0.1.0"
