"""One module per table; importing this package registers them all on `Base.metadata`."""

from jarvis.db.models.agent_state import AgentState
from jarvis.db.models.audit_chain import AuditChainLink, AuditPending
from jarvis.db.models.decision import Decision
from jarvis.db.models.memory_fact import MemoryFact
from jarvis.db.models.planning_cycle import PlanningCycle
from jarvis.db.models.schema_change import SchemaChange
from jarvis.db.models.tool_call import ToolCall

__all__ = [
    "AgentState",
    "AuditChainLink",
    "AuditPending",
    "Decision",
    "MemoryFact",
    "PlanningCycle",
    "SchemaChange",
    "ToolCall",
]
