"""gar-agent: GAR-SSL sound source localization as an inspectable LangGraph workflow."""

__version__ = "0.1.0"
