"""The `edgegw` command line: `main` and its parser; one module per command group, each thin."""

from gateway.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
