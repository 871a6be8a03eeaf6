"""Plan files and planners.

`Planner` is the seam where an LLM will plug in: given a cycle's goals it
yields the steps to take. `ScriptedPlanner` reads them from a YAML or JSON
file, so runs are deterministic and testable. A bad file is reported with
the line and the field, before anything runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: str = Field(min_length=1, max_length=10_000)
    reasoning: dict[str, Any] = Field(default_factory=dict)
    tool: str = Field(min_length=1)
    input: dict[str, Any] = Field(default_factory=dict)


class CyclePlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    goals: list[Any] = Field(min_length=1)
    steps: list[Step] = Field(min_length=1)


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cycles: list[CyclePlan] = Field(min_length=1)


class PlanError(ValueError):
    """A plan file cannot be used; the message names the file, line and field."""


class Planner(Protocol):
    def steps(self, goals: Sequence[Any]) -> Iterable[Step]:
        """The steps to take for these goals, in order."""
        ...


class ScriptedPlanner:
    """Replays the steps written in a plan file for one cycle."""

    def __init__(self, cycle: CyclePlan) -> None:
        self.cycle = cycle

    def steps(self, goals: Sequence[Any]) -> Iterable[Step]:
        return list(self.cycle.steps)


ToolInputs = Mapping[str, type[BaseModel]]
"""Tool name -> its input model: what a plan is checked against before it runs."""


def load_plan(path: Path, tools: ToolInputs | None = None) -> Plan:
    """Parse and validate a plan file; with `tools`, every step's tool must exist and its input fit."""
    try:
        source = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(f"cannot read plan file {path}: {exc.strerror or exc}") from None
    return parse_plan(source, str(path), tools)


def parse_plan(source: str, name: str = "<plan>", tools: ToolInputs | None = None) -> Plan:
    try:
        tree = yaml.compose(source, Loader=yaml.SafeLoader)
        data = yaml.safe_load(source)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        raise PlanError(f"{where}: not valid YAML/JSON: {exc.problem}") from None
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        field = ".".join(str(p) for p in loc) or "(top level)"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise PlanError(f"{name}:{_line_of(tree, loc)}: {field}: {error['msg']}{more}") from None
    if tools is not None:
        for c, cycle in enumerate(plan.cycles):
            for s, step in enumerate(cycle.steps):
                at = ("cycles", c, "steps", s)
                if step.tool not in tools:
                    raise PlanError(
                        f"{name}:{_line_of(tree, (*at, 'tool'))}: cycles.{c}.steps.{s}.tool: unknown tool "
                        f"{step.tool!r}; known tools: {', '.join(sorted(tools))}"
                    )
                try:
                    tools[step.tool].model_validate(step.input)
                except ValidationError as exc:
                    error = exc.errors()[0]
                    loc = (*at, "input", *error["loc"])
                    raise PlanError(
                        f"{name}:{_line_of(tree, loc)}: {'.'.join(map(str, loc))}: {error['msg']} "
                        f"(input of tool {step.tool!r})"
                    ) from None
    return plan


def _line_of(node: Any, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the deepest node along `loc` (pydantic's error path)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((value for key, value in node.value if key.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node, line = child, child.start_mark.line + 1
    return line
