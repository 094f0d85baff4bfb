"""What can go wrong on a link, whatever the protocol on it."""

from __future__ import annotations


class LinkError(Exception):
    """Base of the errors below."""


class LinkDown(LinkError):
    """The connection or serial port is gone (or could not be opened)."""


class NoResponse(LinkError):
    """The device did not answer in time."""


class BadFrame(NoResponse):
    """An answer came but it was garbled (checksum, length, another device or function)."""
