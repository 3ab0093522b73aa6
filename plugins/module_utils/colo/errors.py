"""Exceptions of the COLO runtime.

Every error the runtime raises derives from ColoError, and str() of each is a
sentence an operator can act on (modules pass it to fail_json as msg).
"""
from __future__ import annotations


class ColoError(Exception):
    """Base of every runtime error."""


class QMPError(ColoError):
    """QEMU answered a command with {"error": {"class": ..., "desc": ...}}."""

    def __init__(self, command: str, error_class: str, desc: str):
        self.command = command
        self.error_class = error_class
        self.desc = desc
        super().__init__(f"QMP command {command!r} failed: {desc} ({error_class})")


class QMPTimeout(ColoError):
    """No answer (or no awaited event) within the deadline."""


class QMPConnectionError(ColoError):
    """The QMP socket could not be opened, or QEMU closed it."""


class UnsupportedQemu(ColoError):
    """The QEMU found is known not to run COLO reliably (see guard.py)."""


class InvalidSpec(ColoError):
    """A VM description (VMSpec) is incomplete or inconsistent."""


class LaunchError(ColoError):
    """Starting, finding or stopping a VM process failed."""
