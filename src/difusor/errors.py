"""Errors an operator can act on, and the one table of exit codes.

Every expected failure is a ``DifusorError`` carrying one Spanish line for the operator and an
exit code of its own, read from ``ExitCode``; the CLI prints the line and exits with the code.
Anything else is a bug and keeps its traceback.

    DifusorError        (1) generic expected failure
    ├── PackageRefused  (2) a package failed verification; ``code`` names the rule it broke
    ├── ConfigError     (3) difusor.toml is missing, unreadable or invalid
    ├── StoreError      (4) the store or the state folder is unusable
    ├── BusyError       (5) another publication holds the lock
    ├── NotFound        (6) a corte or release that does not exist (or was collected)
    ├── LogFormatError  (7) an access log whose format is unknown or that cannot be read
    ├── ShieldError     (8) an enforcement point (nginx, nftables, Cloudflare) refused a change
    └── PurgeError      (9) the CDN refused a purge or could not be reached

Usage errors (a bad option or argument) exit 64, before any of these; an interrupted command
(Ctrl-C) exits 130.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit status of ``difusor``: operators' scripts test these numbers, so they never
    change (CONTRACT.md: ``publish`` exits 2 when a package is refused)."""

    OK = 0
    FAILURE = 1
    REFUSED = 2
    CONFIG = 3
    STORE = 4
    BUSY = 5
    NOT_FOUND = 6
    LOG_FORMAT = 7
    SHIELD = 8
    PURGE = 9
    USAGE = 64  # EX_USAGE (sysexits.h): 2 already means "package refused"
    INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


class DifusorError(Exception):
    exit_code = ExitCode.FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PackageRefused(DifusorError):
    """A package is refused; nothing live changes. ``code`` is stable for scripts and tests."""

    exit_code = ExitCode.REFUSED

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ConfigError(DifusorError):
    exit_code = ExitCode.CONFIG


class StoreError(DifusorError):
    exit_code = ExitCode.STORE


class BusyError(DifusorError):
    exit_code = ExitCode.BUSY


class NotFound(DifusorError):
    exit_code = ExitCode.NOT_FOUND


class LogFormatError(DifusorError):
    exit_code = ExitCode.LOG_FORMAT


class ShieldError(DifusorError):
    exit_code = ExitCode.SHIELD


class PurgeError(DifusorError):
    exit_code = ExitCode.PURGE
