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

from jarvis.config import ExitCode, JarvisError
from jarvis.db import jsonb
from jarvis.db.jsonb import MAX_DEPTH


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


class PlanError(JarvisError, ValueError):
    """A plan file cannot be used; the message names the file, line and field."""

    exit_code = ExitCode.BAD_INPUT


class Planner(Protocol):
    def steps(self, goals: Sequence[Any]) -> Iterable[Step]:
        """The steps to take for these goals, in order."""
        ...


class ScriptedPlanner:
    """Replays the steps written in a plan file for one cycle."""

    def __init__(self, cycle: CyclePlan) -> None:
        self.cycle = cycle

    def steps(self, goals: Sequence[Any]) -> Iterable[Step]:
        """The plan file's steps for this cycle, whatever the goals: deterministic runs."""
        return list(self.cycle.steps)


ToolInputs = Mapping[str, type[BaseModel]]
"""Tool name -> its input model: what a plan is checked against before it runs."""


DEFAULT_MAX_PLAN_BYTES = 2 * 1024 * 1024
"""JARVIS_MAX_PLAN_BYTES when unset: the largest plan file read."""

MAX_PLAN_NODES = 100_000
"""Values (scalars, lists, mappings) a plan may hold: building each costs YAML about 10 µs and 300 bytes."""

MAX_PLAN_DEPTH = MAX_DEPTH + 10
"""Nesting a plan may have: the plan's own levels (cycles, steps, input...) above values of up to MAX_DEPTH."""

# libyaml when PyYAML has it (the wheels do): the same safe YAML, far faster and leaner than pure Python.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_plan(
    path: Path,
    tools: ToolInputs | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_PLAN_BYTES,
    max_value_bytes: int | None = None,
) -> Plan:
    """Parse and validate a plan file; with `tools`, every step's tool must exist and its input fit.

    A file larger than `max_bytes` is refused before it is read.
    """
    try:
        with Path(path).open("rb") as file:
            raw = file.read(max_bytes + 1)
    except OSError as exc:
        raise PlanError(f"cannot read plan file {path}: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise PlanError(
            f"{path}: the plan file is larger than {max_bytes:,} bytes (JARVIS_MAX_PLAN_BYTES). "
            "Fix: split it into several plans, or raise JARVIS_MAX_PLAN_BYTES."
        )
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PlanError(f"{path}:{line}: not UTF-8 (byte {raw[exc.start]:#04x} at offset {exc.start})") from None
    return parse_plan(source, str(path), tools, max_bytes=max_bytes, max_value_bytes=max_value_bytes)


def parse_plan(
    source: str,
    name: str = "<plan>",
    tools: ToolInputs | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_PLAN_BYTES,
    max_value_bytes: int | None = None,
) -> Plan:
    """Parse and validate a plan: everything a run would store is checked here, before anything is opened.

    YAML anchors and aliases are refused (a few hundred bytes of them expand to gigabytes), and so
    is nesting deeper than MAX_PLAN_DEPTH. Every goal, decision, reasoning and tool input must be
    storable as it will be stored (no NaN, no NUL, within `max_value_bytes`, default
    JARVIS_MAX_VALUE_BYTES).
    """
    if len(source) > max_bytes or len(source.encode("utf-8", "surrogatepass")) > max_bytes:
        raise PlanError(
            f"{name}: the plan is larger than {max_bytes:,} bytes (JARVIS_MAX_PLAN_BYTES). "
            "Fix: split it into several plans, or raise JARVIS_MAX_PLAN_BYTES."
        )
    tree, data = _parse_yaml(source, name)
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        field = ".".join(str(p) for p in loc) or "(top level)"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise PlanError(f"{name}:{_line_of(tree, loc)}: {field}: {error['msg']}{more}") from None
    limit = max_value_bytes if max_value_bytes is not None else jsonb.max_value_bytes()

    def storable(value: Any, loc: tuple[Any, ...], what: str) -> None:
        try:
            if isinstance(value, str):
                jsonb.check_text(value, what, max_bytes=limit)
            else:
                jsonb.ensure_jsonb(value, what=what, max_bytes=limit)
        except jsonb.InvalidJsonError as exc:
            field = ".".join(map(str, loc))
            raise PlanError(f"{name}:{_line_of(tree, loc)}: {field}: {exc}") from None

    for c, cycle in enumerate(plan.cycles):
        storable(cycle.goals, ("cycles", c, "goals"), "goals")
        for s, step in enumerate(cycle.steps):
            at = ("cycles", c, "steps", s)
            storable(step.decision, (*at, "decision"), "decision")
            storable(step.tool, (*at, "tool"), "tool")
            storable(step.reasoning, (*at, "reasoning"), "reasoning")
            storable(step.input, (*at, "input"), "input")
            # The decision_log value the run records: the reasoning with the step's tool and input.
            recorded = {**step.reasoning, "tool": step.tool, "input": step.input}
            storable(recorded, at, "the decision's recorded reasoning (reasoning + tool + input)")
            if tools is None:
                continue
            if step.tool not in tools:
                raise PlanError(
                    f"{name}:{_line_of(tree, (*at, 'tool'))}: cycles.{c}.steps.{s}.tool: unknown tool "
                    f"{step.tool!r}; known tools: {', '.join(sorted(tools))}"
                )
            try:
                validated = tools[step.tool].model_validate(step.input)
            except ValidationError as exc:
                error = exc.errors()[0]
                loc = (*at, "input", *error["loc"])
                raise PlanError(
                    f"{name}:{_line_of(tree, loc)}: {'.'.join(map(str, loc))}: {error['msg']} "
                    f"(input of tool {step.tool!r})"
                ) from None
            # The tool call's recorded input: the validated model, defaults filled in.
            storable(validated.model_dump(mode="json"), (*at, "input"), f"input of tool {step.tool!r}")
    return plan


def _parse_yaml(source: str, name: str) -> tuple[Any, Any]:
    """The node tree (for line numbers) and the data.

    A first pass over the parser's events (cheap: no nodes are built) refuses anchors, aliases,
    nesting deeper than MAX_PLAN_DEPTH and more than MAX_PLAN_NODES values before anything is built.
    """
    try:
        depth = nodes = 0
        for event in yaml.parse(source, Loader=_Loader):
            line = event.start_mark.line + 1 if event.start_mark is not None else 1
            anchor = getattr(event, "anchor", None)  # on aliases and on nodes (scalars, collections)
            if anchor is not None:
                kind = "alias" if isinstance(event, yaml.AliasEvent) else "anchor"
                raise PlanError(
                    f"{name}:{line}: YAML {kind} {'*' if kind == 'alias' else '&'}{anchor}: anchors and "
                    "aliases are not allowed in plans (a few hundred bytes of them expand to gigabytes). "
                    "Fix: write the value out where it is used."
                )
            if isinstance(event, yaml.NodeEvent):
                nodes += 1
                if nodes > MAX_PLAN_NODES:
                    raise PlanError(
                        f"{name}:{line}: the plan holds more than {MAX_PLAN_NODES:,} values. "
                        "Fix: split it into several plans."
                    )
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_PLAN_DEPTH:
                    raise PlanError(
                        f"{name}:{line}: nested deeper than {MAX_PLAN_DEPTH} levels. Fix: flatten the plan."
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        loader = _Loader(source)
        try:
            tree = loader.get_single_node()
            data = loader.construct_document(tree) if tree is not None else None
        finally:
            loader.dispose()
    except PlanError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        raise PlanError(f"{where}: not valid YAML/JSON: {exc.problem}") from None
    except yaml.YAMLError as exc:  # the reader's errors (control characters) carry no mark
        raise PlanError(f"{name}: not valid YAML/JSON: {_one_line(str(exc))}") from None
    except RecursionError:  # the pure-Python parser, on nesting within MAX_PLAN_DEPTH on a small stack
        raise PlanError(f"{name}: nested too deeply to parse. Fix: flatten the plan.") from None
    except (ValueError, OverflowError) as exc:  # a scalar YAML resolves but cannot build: 2024-13-45, 10**5000
        raise PlanError(
            f"{name}: a value cannot be read: {_one_line(str(exc))}. Fix: quote it to make it a string."
        ) from None
    return tree, data


def _one_line(text: str) -> str:
    return " ".join(text.split())


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
