"""The agent: composes config and db into something that plans, acts and leaves an audit trail."""

from jarvis.agent.plan import CyclePlan, Plan, PlanError, Planner, ScriptedPlanner, Step, load_plan, parse_plan
from jarvis.agent.runtime import Agent, AgentAlreadyRunningError, CycleResult, StepOutcome
from jarvis.agent.tools import Tool, ToolInputError, ToolRegistry, UnknownToolError

__all__ = [
    "Agent",
    "AgentAlreadyRunningError",
    "CyclePlan",
    "CycleResult",
    "Plan",
    "PlanError",
    "Planner",
    "ScriptedPlanner",
    "Step",
    "StepOutcome",
    "Tool",
    "ToolInputError",
    "ToolRegistry",
    "UnknownToolError",
    "load_plan",
    "parse_plan",
]
