"""The Performance issue's six goals, each judged from this run's figures (never written in by hand)."""

from __future__ import annotations

from dataclasses import dataclass

from peer_bench.growth import Growth
from peer_bench.rounds import Rates

FULL_SIZE = 1_000_000
"""Goals 4-6 are stated at a million audited calls; a smaller `--rows` run is reported, not judged."""
CACHED_GET_FLOOR = 0.8
"""'Cached get stays ≈ raw' read as at least 0.8 x the raw prepared SELECT."""


@dataclass(frozen=True)
class Check:
    figure: str
    met: bool


@dataclass(frozen=True)
class Goal:
    number: int
    title: str
    target: str
    checks: tuple[Check, ...]
    not_measured: str | None = None

    @property
    def verdict(self) -> str:
        if self.not_measured:
            return f"not measured: {self.not_measured}"
        return "met" if all(check.met for check in self.checks) else "not met"

    @property
    def figures(self) -> str:
        """Each condition's figure, marked ✓ or ✗."""
        return "; ".join(f"{check.figure} {'✓' if check.met else '✗'}" for check in self.checks)


def _ratio(rates: dict[str, Rates], key: str, base: str) -> float:
    return rates[key].median / rates[base].median if rates[base].median else 0.0


def _at_least(label: str, value: float, floor: float) -> Check:
    return Check(f"{label} {value:.2f} (≥ {floor:g})", value >= floor)


def goals(rates: dict[str, Rates], *, forks: int, growth: Growth | None) -> list[Goal]:
    r = rates
    result = [
        Goal(
            1,
            "Audited tool call",
            "`record()` ≥ 0.65 x raw and ≥ 1.0 x LangGraph put+put_writes; agent pattern ≥ 0.5 x raw",
            (
                _at_least("record/raw", _ratio(r, "record", "raw"), 0.65),
                _at_least("record/LangGraph put", _ratio(r, "record", "lg_put"), 1.0),
                _at_least("agent pattern/raw", _ratio(r, "agent", "raw"), 0.5),
            ),
        ),
        Goal(
            2,
            "16 concurrent agents",
            "≥ 2.5 x one agent, ≥ 0.8 x raw psycopg with 16 connections, zero chain forks",
            (
                _at_least("16 agents/one agent", _ratio(r, "agents16", "agent"), 2.5),
                _at_least("16 agents/raw16", _ratio(r, "agents16", "raw16"), 0.8),
                Check(f"verify problems (forks included) {forks}", forks == 0),
            ),
        ),
        Goal(
            3,
            "State",
            f"get ≥ 0.5 x raw SELECT, set ≥ 0.6 x raw UPSERT, cached get ≈ raw (≥ {CACHED_GET_FLOOR:g})",
            (
                _at_least("get/raw SELECT", _ratio(r, "state_get", "raw_select"), 0.5),
                _at_least("set/raw UPSERT", _ratio(r, "state_set", "raw_upsert"), 0.6),
                _at_least("cached get/raw SELECT", _ratio(r, "cached_get", "raw_select"), CACHED_GET_FLOOR),
            ),
        ),
    ]
    result.extend(_growth_goals(growth))
    return result


def _growth_goals(growth: Growth | None) -> list[Goal]:
    targets = [
        (
            4,
            "Verify and seal",
            "full verify ≥ 200k rows/s, seal ≥ 100k rows/s at 1M; incremental verify of 10k new rows < 1 s",
        ),
        (5, "Flat cost with history", "agent cycle at 1M ≥ 0.9 x at 10k, no manual VACUUM"),
        (6, "Storage", "≤ 900 bytes per audited call at 1M (the queue apart)"),
    ]
    if growth is None:
        return [Goal(n, title, target, (), "run with `--rows 1000000`") for n, title, target in targets]
    short = None if growth.rows >= FULL_SIZE else f"this run had {growth.rows:,} calls, the goal is at 1M"
    incremental = (
        Check(
            f"incremental verify {growth.incremental_s:.2f} s (< 1)",
            growth.incremental_s < 1.0 and not growth.incremental_full,
        )
        if growth.incremental_s is not None
        else Check("incremental verify not available", False)
    )
    checks = {
        4: (
            Check(f"verify {growth.verify_rows_per_s:,.0f} rows/s (≥ 200,000)", growth.verify_rows_per_s >= 200_000),
            Check(f"seal {growth.seal_rows_per_s:,.0f} rows/s (≥ 100,000)", growth.seal_rows_per_s >= 100_000),
            incremental,
        ),
        5: (_at_least(f"cycle at {growth.rows:,}/at 10k", growth.cycle_ratio, 0.9),),
        6: (
            Check(
                f"{growth.bytes_per_call:,.0f} bytes per call (≤ 900; queue {growth.queue_bytes:,} bytes)",
                growth.bytes_per_call <= 900,
            ),
        ),
    }
    return [Goal(n, title, target, checks[n], short) for n, title, target in targets]
