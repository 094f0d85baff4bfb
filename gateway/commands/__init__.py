"""Command groups of the `edgegw` CLI beyond the core ones in `gateway.cli`.

Each module here exposes `register(sub)` taking the top-level subparsers object; the names
are listed in `gateway.cli.COMMAND_MODULES`.
"""
