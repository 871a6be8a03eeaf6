"""Every error Jarvis raises for a person derives from JarvisError and carries the exit code the CLI gives it."""

from __future__ import annotations

import pytest
import typer

from jarvis.agent import AgentAlreadyRunningError, PlanError, ToolInputError, UnknownToolError
from jarvis.agent.bundle import BundleError, BundleExistsError
from jarvis.agent.witnessing import CheckpointContradictedError
from jarvis.cache import CycleLockHeldError
from jarvis.cache.auth import CacheKeyError
from jarvis.cli.session import reported_errors
from jarvis.config import ConfigError, ExitCode, JarvisError
from jarvis.db import (
    DatabaseError,
    DatabaseUnavailableError,
    InvalidJsonError,
    InvalidKeyError,
    NotMigratedError,
    PoolExhaustedError,
    RoleNotGrantedError,
    RuntimeDDLError,
    StateConflictError,
    TableConflictError,
)
from jarvis.db.audit import (
    AuditAppendError,
    AuditRuleViolation,
    CycleAlreadyOpenError,
    SealConflictError,
    SealerBusyError,
    SealPermissionError,
)
from jarvis.db.embedded import EmbeddedPostgresUnavailable
from jarvis.db.jsonb import ValueTooLargeError
from jarvis.db.migrate import MigrationError
from jarvis.db.migrations.guard import AuditTrailGuardError
from jarvis.witness import WitnessError

# The exit codes the CLI gave before the hierarchy (its class -> code table), pinned.
EXIT_CODES: list[tuple[type[JarvisError], ExitCode]] = [
    (ConfigError, ExitCode.BAD_INPUT),
    (CacheKeyError, ExitCode.BAD_INPUT),
    (NotMigratedError, ExitCode.BAD_INPUT),
    (RoleNotGrantedError, ExitCode.BAD_INPUT),
    (MigrationError, ExitCode.BAD_INPUT),
    (SealPermissionError, ExitCode.BAD_INPUT),
    (WitnessError, ExitCode.BAD_INPUT),
    (CheckpointContradictedError, ExitCode.BAD_INPUT),
    (SealerBusyError, ExitCode.FAILED),
    (SealConflictError, ExitCode.FAILED),
    (DatabaseError, ExitCode.FAILED),
    (AuditTrailGuardError, ExitCode.BAD_INPUT),
    (BundleError, ExitCode.BAD_INPUT),
    (BundleExistsError, ExitCode.BAD_INPUT),
    (PlanError, ExitCode.BAD_INPUT),
    (InvalidJsonError, ExitCode.BAD_INPUT),
    (ValueTooLargeError, ExitCode.BAD_INPUT),
    (InvalidKeyError, ExitCode.BAD_INPUT),
    (RuntimeDDLError, ExitCode.BAD_INPUT),
    (TableConflictError, ExitCode.BAD_INPUT),
    (ToolInputError, ExitCode.BAD_INPUT),
    (UnknownToolError, ExitCode.BAD_INPUT),
    (DatabaseUnavailableError, ExitCode.UNAVAILABLE),
    (EmbeddedPostgresUnavailable, ExitCode.UNAVAILABLE),
    (PoolExhaustedError, ExitCode.UNAVAILABLE),
    (StateConflictError, ExitCode.FAILED),
    (AuditAppendError, ExitCode.FAILED),
    (AuditRuleViolation, ExitCode.FAILED),
    (CycleAlreadyOpenError, ExitCode.FAILED),
    (AgentAlreadyRunningError, ExitCode.FAILED),
    (CycleLockHeldError, ExitCode.FAILED),
]


@pytest.mark.parametrize(("kind", "code"), EXIT_CODES, ids=[kind.__name__ for kind, _ in EXIT_CODES])
def test_every_error_keeps_the_exit_code_the_cli_gave_it(kind: type[JarvisError], code: ExitCode) -> None:
    assert issubclass(kind, JarvisError)
    assert kind.exit_code == code


def test_the_cli_exits_with_the_errors_own_code_and_one_line() -> None:
    class Novel(JarvisError):  # a new error needs no table entry to be reported
        exit_code = ExitCode.NOT_FOUND

    with pytest.raises(typer.Exit) as exited, reported_errors():
        raise Novel("no such thing. Fix: name another")
    assert exited.value.exit_code == ExitCode.NOT_FOUND


def test_builtin_bases_are_kept_for_callers_that_catch_them() -> None:
    assert issubclass(InvalidJsonError, ValueError) and issubclass(InvalidKeyError, ValueError)
    assert issubclass(UnknownToolError, LookupError) and issubclass(AgentAlreadyRunningError, RuntimeError)
    assert issubclass(EmbeddedPostgresUnavailable, RuntimeError)
