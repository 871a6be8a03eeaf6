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
from jarvis.cli.session import ExitCode, console, errors, reported_errors, settings_or_exit
from jarvis.cli.views import timeline_table, verify_line


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
            console.print(f"agent [bold]{agent_name}[/bold] on {agent.database.display_url}", highlight=False)
            for dangling in agent.closed_at_start:
                console.print(
                    f"[magenta]closed dangling {dangling.table} {dangling.id} ({dangling.name}) "
                    "as abandoned[/magenta]"
                )
            for number, cycle in enumerate(plan.cycles, start=1):
                console.rule(f"cycle {number}/{len(plan.cycles)}: {', '.join(map(str, cycle.goals))}")

                total = len(cycle.steps)

                def on_step(index: int, step: Step, outcome: StepOutcome, total: int = total) -> None:
                    mark = "[green]✓[/green]" if outcome.ok else "[red]✗[/red]"
                    detail = "" if outcome.ok else f" [red]{outcome.error}[/red]"
                    console.print(
                        f"  {mark} step {index + 1}/{total} {step.tool}: {step.decision}{detail}", highlight=False
                    )

                result = agent.run_cycle(cycle.goals, ScriptedPlanner(cycle), on_step=on_step)
                any_failed |= result.status != "succeeded"
                if show_timeline:
                    summary = next(c for c in agent.planning.cycles(limit=5) if c.id == result.cycle_id)
                    console.print(timeline_table(summary, agent.planning.timeline(result.cycle_id)))
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
    settings_or_exit()
    with reported_errors():
        plan = load_plan(plan_file, BUILTIN_TOOL_INPUTS)  # checked before anything starts
    run_plan(plan, agent_name=agent_name, show_timeline=timeline)


def demo_command(
    agent_name: str = typer.Option("demo", "--agent", help="The agent's name."),
) -> None:
    """The whole system in one command: embedded PostgreSQL, migrations, an example plan, a verified trail."""
    source = resources.files("jarvis.agent").joinpath("plans/demo.yaml").read_text(encoding="utf-8")
    with reported_errors():
        plan = parse_plan(source, "demo.yaml", BUILTIN_TOOL_INPUTS)
    run_plan(plan, agent_name=agent_name, show_timeline=True)
    console.print(
        "[dim]run it again: the trail grows, nothing is wiped. "
        "Inspect with `jarvis audit show`, `jarvis audit verify`.[/dim]"
    )
