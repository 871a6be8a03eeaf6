"""`jarvis run PLAN` and `jarvis demo`: the agent at work, with progress and a verified trail at the end."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from types import FrameType

import typer

from jarvis.agent import Agent, Plan, ScriptedPlanner, Step, StepOutcome, load_plan, parse_plan
from jarvis.agent.builtin_tools import BUILTIN_TOOL_INPUTS
from jarvis.agent.witnessing import verify_trail
from jarvis.cli.session import ExitCode, console, errors, fail, reported_errors, settings_or_exit
from jarvis.cli.views import safe, short_json, timeline_table, verify_line
from jarvis.db.audit import AuditQueries
from jarvis.db.jsonb import InvalidJsonError, check_text


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived: unwind like Ctrl-C, so the audit trail records a cancellation."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def interruptible() -> Iterator[None]:
    def handler(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_plan(plan: Plan, *, agent_name: str, show_timeline: bool) -> None:
    """Run every cycle of `plan`, print what happened, and verify the trail."""
    settings = settings_or_exit()
    any_failed = False
    with reported_errors(), interruptible():
        with console.status("starting: database, migrations, dangling work from earlier runs…"):
            agent = Agent.start(settings, name=agent_name)
        try:
            console.print(
                f"agent [bold]{safe(agent_name)}[/bold] on {safe(agent.database.display_url)}", highlight=False
            )
            for dangling in agent.closed_at_start:
                console.print(
                    f"[magenta]closed dangling {safe(dangling.table)} {dangling.id} ({safe(dangling.name)}) "
                    "as abandoned[/magenta]",
                    highlight=False,
                )
            queries = AuditQueries(agent.database)
            for number, cycle in enumerate(plan.cycles, start=1):
                goals = ", ".join(short_json(goal, 200) for goal in cycle.goals)
                console.rule(f"cycle {number}/{len(plan.cycles)}: {safe(short_json(goals, 200))}")

                total = len(cycle.steps)

                def on_step(index: int, step: Step, outcome: StepOutcome, total: int = total) -> None:
                    # Plan and tool text is untrusted: shown, never obeyed as markup (`[/INST]`, a fake
                    # "[green]OK…"), never breaking the line.
                    mark = "[green]✓[/green]" if outcome.ok else "[red]✗[/red]"
                    detail = "" if outcome.ok else f" [red]{safe(outcome.error)}[/red]"
                    console.print(
                        f"  {mark} step {index + 1}/{total} {safe(step.tool)}: {safe(step.decision)}{detail}",
                        highlight=False,
                    )

                result = agent.run_cycle(cycle.goals, ScriptedPlanner(cycle), on_step=on_step)
                any_failed |= result.status != "succeeded"
                if show_timeline:
                    summary = queries.cycle(result.cycle_id)
                    if summary is not None:  # just closed by this process: always there
                        console.print(timeline_table(summary, queries.timeline(result.cycle_id)))
            with console.status("verifying the audit trail…"):
                report = verify_trail(agent.database, agent.database.settings)
            console.print(verify_line(report), highlight=False, soft_wrap=True)
        except Interrupted as interruption:
            errors.print(f"[yellow]{interruption}: current tool call cancelled, cycle closed as cancelled[/yellow]")
            raise typer.Exit(128 + interruption.signum) from None
        finally:
            agent.shutdown()
    if not report.ok:
        raise typer.Exit(int(ExitCode.FAILED))
    if any_failed:
        console.print("[yellow]some steps failed; they are recorded above and in the trail[/yellow]")


def run_command(
    plan_file: Path = typer.Argument(..., help="A YAML or JSON plan file (see plans/demo.yaml)."),
    agent_name: str = typer.Option("jarvis", "--agent", help="The agent's name (one live process per name)."),
    timeline: bool = typer.Option(True, "--timeline/--no-timeline", help="Print each cycle's timeline."),
) -> None:
    """Run a plan file: one planning cycle per entry, every tool call audited."""
    settings = settings_or_exit()
    check_agent_name(agent_name)
    with reported_errors():
        # The whole plan is checked before anything starts: every value as it will be stored.
        plan = load_plan(
            plan_file,
            BUILTIN_TOOL_INPUTS,
            max_bytes=settings.max_plan_bytes,
            max_value_bytes=settings.max_value_bytes,
        )
    run_plan(plan, agent_name=agent_name, show_timeline=timeline)


def check_agent_name(agent_name: str) -> None:
    try:
        check_text(agent_name, "--agent")
    except InvalidJsonError as error:
        fail(str(error), ExitCode.BAD_INPUT)
    if not agent_name.strip():
        fail("--agent must not be empty", ExitCode.BAD_INPUT)


def demo_command(
    agent_name: str = typer.Option("demo", "--agent", help="The agent's name."),
) -> None:
    """The whole system in one command: embedded PostgreSQL, migrations, an example plan, a verified trail."""
    settings = settings_or_exit()
    check_agent_name(agent_name)
    source = resources.files("jarvis.agent").joinpath("plans/demo.yaml").read_text(encoding="utf-8")
    with reported_errors():
        plan = parse_plan(source, "demo.yaml", BUILTIN_TOOL_INPUTS, max_value_bytes=settings.max_value_bytes)
    run_plan(plan, agent_name=agent_name, show_timeline=True)
    console.print(
        "[dim]run it again: the trail grows, nothing is wiped. "
        "Inspect with `jarvis audit show`, `jarvis audit verify`.[/dim]"
    )
