"""Errors an operator can act on.

Every expected failure is a ``DifusorError`` carrying one Spanish line for the operator and an
exit code of its own; the CLI prints the line and exits with the code. Anything else is a bug and
keeps its traceback.

    DifusorError        (1) generic expected failure
    ├── PackageRefused  (2) a package failed verification; ``code`` names the rule it broke
    ├── ConfigError     (3) difusor.toml is missing, unreadable or invalid
    ├── StoreError      (4) the store or the state folder is unusable
    ├── BusyError       (5) another publication holds the lock
    ├── NotFound        (6) a corte or release that does not exist (or was collected)
    ├── LogFormatError  (7) an access log whose format is unknown or that cannot be read
    ├── ShieldError     (8) an enforcement point (nginx, nftables, Cloudflare) refused a change
    └── PurgeError      (9) the CDN refused a purge or could not be reached

Usage errors (a bad option or argument) exit 64, before any of these.
"""

from __future__ import annotations


class DifusorError(Exception):
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PackageRefused(DifusorError):
    """A package is refused; nothing live changes. ``code`` is stable for scripts and tests."""

    exit_code = 2

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ConfigError(DifusorError):
    exit_code = 3


class StoreError(DifusorError):
    exit_code = 4


class BusyError(DifusorError):
    exit_code = 5


class NotFound(DifusorError):
    exit_code = 6


class LogFormatError(DifusorError):
    exit_code = 7


class ShieldError(DifusorError):
    exit_code = 8


class PurgeError(DifusorError):
    exit_code = 9
