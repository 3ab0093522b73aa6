"""Exceptions of the COLO runtime.

Every error the runtime raises derives from ColoError, and str() of each is a
sentence an operator can act on (modules pass it to fail_json as msg).
"""
from __future__ import annotations


class ColoError(Exception):
    """Base of every runtime error."""


def sent(command: str, arguments: dict | None = None) -> str:
    """A QMP command as it was sent, for messages: "migrate {'uri': 'tcp:h:9998'}"."""
    return f"{command} {arguments!r}" if arguments else command


class QMPError(ColoError):
    """QEMU answered a command with {"error": {"class": ..., "desc": ...}}.

    Keeps what was sent (command, arguments) and what QEMU said (error_class, desc).
    """

    def __init__(self, command: str, error_class: str, desc: str, arguments: dict | None = None):
        self.command = command
        self.arguments = arguments
        self.error_class = error_class
        self.desc = desc
        super().__init__(f"{sent(command, arguments)}: {desc} ({error_class})")


class QMPTimeout(ColoError):
    """No answer (or no awaited event) within the deadline.

    command and arguments: the command that got no answer (None while waiting for an event).
    """

    def __init__(self, message: str, command: str | None = None, arguments: dict | None = None):
        self.command = command
        self.arguments = arguments
        super().__init__(f"{sent(command, arguments)}: {message}" if command else message)


class QMPConnectionError(ColoError):
    """The QMP socket could not be opened, or QEMU closed it."""


class UnsupportedQemu(ColoError):
    """The QEMU found is known not to run COLO reliably (see guard.py)."""


class InvalidSpec(ColoError):
    """A VM description (VMSpec) is incomplete or inconsistent."""


class LaunchError(ColoError):
    """Starting, finding or stopping a VM process failed."""
