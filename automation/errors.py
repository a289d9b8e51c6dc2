"""The one exception family of the release CLI and the exit codes it maps to.

Every error carries a one-line reason; cli.main() prints it and exits with the
error's code. Tracebacks only with --debug.
"""
from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1            # the change failed; the previous release was restored (or nothing was changed)
    BAD_INPUT = 2         # bad argument, file or value; nothing was changed
    BLOCKED = 3           # refused by a gate (approval, plan mismatch) or a locked stack; nothing was changed
    ROLLBACK_FAILED = 4   # the automatic rollback itself failed: a person is needed


class FleetError(Exception):
    """Base of every error the CLI reports as one line."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class BadInput(FleetError):
    exit_code = ExitCode.BAD_INPUT


class Blocked(FleetError):
    exit_code = ExitCode.BLOCKED


class ReleaseFailed(FleetError):
    exit_code = ExitCode.FAILED


class RollbackFailed(FleetError):
    exit_code = ExitCode.ROLLBACK_FAILED
