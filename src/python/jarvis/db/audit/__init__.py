"""The audit trail: append-only tool calls, planning cycles and decisions, bound into a hash chain."""

from jarvis.db.audit.append import (
    AuditAppendBlockedError,
    AuditAppendError,
    AuditEvent,
    AuditIdCollisionError,
    AuditListener,
    AuditRuleViolation,
)
from jarvis.db.audit.chain import (
    ExpectedHead,
    Problem,
    SealConflictError,
    SealerBusyError,
    SealPermissionError,
    SealResult,
    TrustedHead,
    VerifyReport,
    seal,
)
from jarvis.db.audit.dangling import DanglingStart, close_dangling, find_dangling
from jarvis.db.audit.ids import uuid7
from jarvis.db.audit.planning import CycleAlreadyOpenError, CycleClosedError, PlanningLog
from jarvis.db.audit.queries import AuditQueries, Cursor, CycleSummary, TimelineEntry, ToolCallSummary
from jarvis.db.audit.tool_calls import ActiveCall, ToolCallAlreadyCompletedError, ToolCallLog, ToolCallStart
from jarvis.db.audit.verifier import verify

__all__ = [
    "ActiveCall",
    "AuditAppendBlockedError",
    "AuditAppendError",
    "AuditEvent",
    "AuditIdCollisionError",
    "AuditListener",
    "AuditQueries",
    "AuditRuleViolation",
    "Cursor",
    "CycleAlreadyOpenError",
    "CycleClosedError",
    "CycleSummary",
    "DanglingStart",
    "ExpectedHead",
    "PlanningLog",
    "Problem",
    "SealConflictError",
    "SealPermissionError",
    "SealResult",
    "SealerBusyError",
    "TimelineEntry",
    "ToolCallAlreadyCompletedError",
    "ToolCallLog",
    "ToolCallStart",
    "ToolCallSummary",
    "TrustedHead",
    "VerifyReport",
    "close_dangling",
    "find_dangling",
    "seal",
    "uuid7",
    "verify",
]
