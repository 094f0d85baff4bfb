"""The product's version, as installed (one source: pyproject.toml)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgegw")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
