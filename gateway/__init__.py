"""edgegw: the application on top (runtime, metrics, APIs, CLI)."""

__version__ = "0.1.0"
