"""Alternating timed rounds: every contender runs once per round, so drift on a shared machine hits all alike."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rich.progress import Progress

Run = Callable[[int], tuple[int, float]]
"""Run `n` units of work; return how many units were done and the seconds the timed part took.

A contender times its own hot section, so set-up it needs per round (opening the cycle that
`record()` writes into, the LangGraph thread) stays outside the figure."""


@dataclass(frozen=True)
class Contender:
    key: str
    """Short name the goals and the write accounting refer to."""
    label: str
    run: Run
    settle: Callable[[], None] = field(default=lambda: None)
    """Untimed work after each run, e.g. sealing the rows a non-sealing contender queued, so the next
    contender's seal does not pay for them."""


@dataclass
class Rates:
    """Units per second, one figure per round."""

    per_round: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.per_round) if self.per_round else 0.0

    @property
    def low(self) -> float:
        return min(self.per_round, default=0.0)

    @property
    def high(self) -> float:
        return max(self.per_round, default=0.0)


def alternate(contenders: Sequence[Contender], *, rounds: int, units: int, warm_up: int) -> dict[str, Rates]:
    """Run every contender `rounds` times, rotating the order each round; one rate per round each.

    The warm-up (caches, plans, pools, the server's catalog caches) is run once and not counted.
    """
    rates = {contender.key: Rates() for contender in contenders}
    with Progress(transient=True) as progress:
        task = progress.add_task("warming up", total=len(contenders) * (rounds + 1))
        for contender in contenders:
            contender.run(warm_up)
            contender.settle()
            progress.advance(task)
        for round_number in range(rounds):
            progress.update(task, description=f"round {round_number + 1} of {rounds}")
            shift = round_number % len(contenders)
            for contender in [*contenders[shift:], *contenders[:shift]]:
                done, seconds = contender.run(units)
                contender.settle()
                rates[contender.key].per_round.append(done / seconds if seconds > 0 else 0.0)
                progress.advance(task)
    return rates
