"""One module per table; importing this package registers them all on `Base.metadata`."""

from jarvis.db.models.agent_cycle_guard import AgentCycleGuard
from jarvis.db.models.agent_lease import AgentLease
from jarvis.db.models.agent_state import AgentState
from jarvis.db.models.audit_chain import AuditChainLink, AuditFlag, AuditPending, AuditSealHead
from jarvis.db.models.audit_checkpoint import AuditCheckpoint
from jarvis.db.models.decision import Decision
from jarvis.db.models.memory_fact import MemoryFact
from jarvis.db.models.planning_cycle import PlanningCycle
from jarvis.db.models.schema_change import SchemaChange
from jarvis.db.models.tool_call import ToolCall
from jarvis.db.models.trail_info import TrailInfo

__all__ = [
    "AgentCycleGuard",
    "AgentLease",
    "AgentState",
    "AuditChainLink",
    "AuditCheckpoint",
    "AuditFlag",
    "AuditPending",
    "AuditSealHead",
    "Decision",
    "MemoryFact",
    "PlanningCycle",
    "SchemaChange",
    "ToolCall",
    "TrailInfo",
]
