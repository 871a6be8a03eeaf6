"""Hostile input through the real `jarvis` command (issue #12, items 1-4), against real PostgreSQL and Redis.

1. Text from a plan, a tool, the database or Redis is printed, never obeyed as Rich markup or terminal
   control: `[/INST]` no longer crashes `jarvis run` after its tool ran, and a decision cannot print a
   green `OK: 9999 audit rows verified` line of its own.
2. Plans refuse YAML anchors and aliases, files over JARVIS_MAX_PLAN_BYTES, more than MAX_PLAN_NODES
   values; every stored value is held to JARVIS_MAX_VALUE_BYTES: one `error:` line, exit 2, nothing written.
3. A plan is validated whole, every value as it will be stored, before anything is opened.
4. Every input error is one line and exit 2: no traceback for deep JSON, deep plans, out-of-range numbers.

The memory and time figures come from the child process itself (`os.wait4`), on a loaded 2-core machine:
the bounds are generous, the figures the tests print are what docs/reliability.md quotes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from jarvis.cache import AuditStream, RedisLink, ensure_cache_key, namespace_for
from jarvis.cli.main import app
from jarvis.config import load_settings
from jarvis.db import open_database
from jarvis.db.audit import ToolCallLog
from jarvis.db.jsonb import DEFAULT_MAX_VALUE_BYTES, set_max_value_bytes

AUDIT_TABLES = ("planning_cycles", "decision_log", "tool_calls")
ALL_TABLES = (*AUDIT_TABLES, "agent_state", "memory_facts")
# `jarvis` as its console script runs it, writing its peak resident memory (VmHWM: this process image alone,
# unlike ru_maxrss, which a child inherits from the test process it was forked from) to a file on exit.
ENTRY_POINT = """\
import atexit, os
peak_file = os.environ.pop("JARVIS_TEST_PEAK_FILE")

def report_peak():
    with open("/proc/self/status") as status, open(peak_file, "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))

atexit.register(report_peak)
from jarvis.cli.main import main
main()
"""

# A decision an LLM could write: its chat-template tokens, Rich markup, a fake verdict on a line of its own,
# terminal escapes (clear the screen, turn green), a right-to-left override that reorders what follows.
HOSTILE_DECISIONS = [
    "answer [/INST] now",
    "[/]",
    "[bold red]not mine[/bold red] [link=https://evil.example]click[/link]",
    "done.\n[green]OK: 9999 audit rows verified; head 9999:00ff[/green]",
    "\x1b[2J\x1b[32mOK: 9999 audit rows verified\x1b[0m",
    "\u202eOK: 9999 audit rows verified",
    "trailing backslash \\",
]


@dataclass
class Run:
    code: int
    out: str
    err: str
    seconds: float
    max_rss_mib: float

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def assert_one_error_line(self, code: int = 2) -> str:
        """Exit `code`, and stderr is exactly one line: `error: …` (no traceback, no panel)."""
        assert self.code == code, f"exit {self.code}, expected {code}:\n{self.out}\n{self.err}"
        assert "Traceback" not in self.err and "Traceback" not in self.out
        assert len(self.err_lines) == 1 and self.err_lines[0].startswith("error: "), self.err
        return self.err_lines[0]


def jarvis(*args: str | bytes, url: str, timeout: float = 180.0, **env: str) -> Run:
    """The real `jarvis` in a subprocess, with its wall time and peak resident memory."""
    peak_file = tempfile.NamedTemporaryFile(prefix="jarvis-peak-", delete=False)
    peak_file.close()
    environment = {
        "JARVIS_TEST_PEAK_FILE": peak_file.name,
        **{k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR", "TERM")},
        "PYTHONPATH": os.pathsep.join(sys.path),
        "DATABASE_URL": url,
        "REDIS_URL": "",
        "COLUMNS": "200",
        "JARVIS_LOG_LEVEL": "WARNING",
        **env,
    }
    try:
        started = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, "-c", ENTRY_POINT, *args], env=environment, capture_output=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise AssertionError(f"jarvis {args!r} ran for more than {timeout} s") from None
        seconds = time.monotonic() - started
        peak_kib = Path(peak_file.name).read_text() or "0"
    finally:
        os.unlink(peak_file.name)
    return Run(
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
        seconds,
        int(peak_kib) / 1024,
    )


runner = CliRunner()


def jarvis_in_process(*args: str, url: str, **env: str) -> Run:
    """The same command through CliRunner (faster; the whole app, real PostgreSQL)."""
    environment = {"DATABASE_URL": url, "REDIS_URL": "", "COLUMNS": "200", "JARVIS_LOG_LEVEL": "WARNING", **env}
    started = time.monotonic()
    result = runner.invoke(app, list(args), env=environment)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Run(result.exit_code, result.stdout, result.stderr, time.monotonic() - started, 0.0)


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {table: conn.execute(f"SELECT count(*) FROM public.{table}").fetchall()[0][0] for table in ALL_TABLES}


def statuses(url: str, agent: str) -> list[str]:
    """Each of `agent`'s cycles: its completion status, or 'open'."""
    with psycopg.connect(url) as conn:
        return [
            row[0]
            for row in conn.execute(
                "SELECT coalesce(c.status, 'open') FROM public.planning_cycles s "
                "LEFT JOIN public.planning_cycles c ON c.parent_id = s.id "
                "WHERE s.parent_id IS NULL AND s.agent = %s ORDER BY s.created_at",
                (agent,),
            )
        ]


def plan_text(*steps: dict[str, Any], goals: list[Any] | None = None) -> str:
    return json.dumps({"cycles": [{"goals": goals or ["hostile"], "steps": list(steps)}]}, ensure_ascii=False)


def remember(decision: str = "remember", **body: Any) -> dict[str, Any]:
    return {"decision": decision, "tool": "remember", "input": {"subject": "hostile", "body": body or {"ok": True}}}


@pytest.fixture
def url(isolated_database_url: str) -> str:
    return isolated_database_url


@pytest.fixture(autouse=True)
def default_cap() -> Iterator[None]:
    yield
    set_max_value_bytes(DEFAULT_MAX_VALUE_BYTES)  # in-process commands opened databases with their settings


# --- 1. untrusted text is printed, never obeyed -------------------------------------------------------------


def test_llm_tokens_and_markup_in_decisions_are_printed_not_obeyed(url: str, tmp_path: Path) -> None:
    """`[/INST]` crashed `jarvis run` after its tool ran; a decision could print a fake green verdict."""
    plan = tmp_path / "hostile.json"
    plan.write_text(plan_text(*(remember(d) for d in HOSTILE_DECISIONS)), encoding="utf-8")
    run = jarvis("run", str(plan), "--agent", "[/INST]-agent", url=url, FORCE_COLOR="1")
    assert run.code == 0, run.out + run.err
    assert "Traceback" not in run.err and "MarkupError" not in run.out + run.err
    plain_out = _strip_ansi(run.out)
    assert "answer [/INST] now" in plain_out and "[/INST]-agent" in plain_out
    assert "[bold red]not mine[/bold red]" in plain_out and "[link=https://evil.example]" in plain_out
    # The only verdict is the real one, on a line of its own, and the only green text is Jarvis's.
    verdicts = [line for line in plain_out.splitlines() if line.startswith("OK: ")]
    assert len(verdicts) == 1 and "9999" not in verdicts[0], verdicts
    assert "\x1b[32mOK: 9999" not in run.out and "\x1b[2J" not in run.out and "\u202e" not in run.out
    assert "\\n[green]OK: 9999" in plain_out and "\\x1b[2J" in plain_out and "\\u202e" in plain_out
    assert statuses(url, "[/INST]-agent") == ["succeeded"]
    print(f"RELIABILITY markup-in-decisions decisions={len(HOSTILE_DECISIONS)} exit=0 fake_verdicts=0 cycle=succeeded")

    # Every view of the trail prints the same text, from the database and from Redis alike.
    for args in (
        ["audit", "show"],
        ["audit", "show", "--cycle", "last", "--agent", "[/INST]-agent"],
        ["audit", "tail", "--from-db", "--no-follow"],
        ["audit", "dangling"],
        ["memory", "search", "--subject", "hostile"],
    ):
        shown = jarvis_in_process(*args, url=url)
        assert shown.code == 0, (args, shown.out, shown.err)
        assert not [line for line in shown.out.splitlines() if line.lstrip("│ ").startswith("OK: 9999")], args
    timeline = jarvis_in_process("audit", "show", "--cycle", "last", "--agent", "[/INST]-agent", url=url).out
    assert "[/INST]" in timeline and "\x1b" not in timeline


def test_error_messages_quoting_hostile_text_are_one_escaped_line(url: str, tmp_path: Path) -> None:
    """`fail()` printed its message as markup: a key or plan quoting `[/INST]` turned an error into a traceback."""
    before = counts(url)
    line = jarvis_in_process("state", "get", "[/INST]", url=url).assert_one_error_line(code=4)
    assert "'[/INST]'" in line
    (tmp_path / "[").mkdir()
    plan = tmp_path / "[" / "INST].yaml"  # the path reads .../[/INST].yaml
    plan.write_text(plan_text({"decision": "d", "tool": "[/INST]\n[green]OK"}), encoding="utf-8")
    line = jarvis_in_process("run", str(plan), url=url).assert_one_error_line()
    assert "unknown tool '[/INST]\\n[green]OK'" in line
    missing = jarvis_in_process("run", str(tmp_path / "[" / "INST].missing"), url=url)
    assert "[/INST].missing" in missing.assert_one_error_line()
    assert counts(url) == before


def test_hostile_keys_subjects_and_values_are_printed_as_text(url: str) -> None:
    for args in (
        ["state", "set", "[/INST]\x1b[2J", '"[green]OK: 9999 audit rows verified[/green]\\n"'],
        ["memory", "add", "[/INST]", '{"note": "[/bold] \\u001b[31m"}'],
    ):
        run = jarvis_in_process(*args, url=url)
        assert run.code == 0 and "[/INST]" in run.out and "\x1b" not in run.out, (args, run.out, run.err)
    for args in (["state", "list"], ["memory", "search", "--subject", "[/INST]"]):
        run = jarvis_in_process(*args, url=url)
        assert run.code == 0 and "[/INST]" in run.out and "\x1b" not in run.out, (args, run.out, run.err)
    assert "[green]OK: 9999" in jarvis_in_process("state", "list", url=url).out


def test_events_from_redis_are_printed_as_text(url: str, redis_url: str) -> None:
    """`audit tail` prints what the Redis stream holds: a tool name there is untrusted too."""
    settings = load_settings(database_url=url, redis_url=redis_url)
    database = open_database(settings)
    link = RedisLink(redis_url, namespace=namespace_for(database), auth_key=ensure_cache_key(settings))
    try:
        tools = ToolCallLog(database, listeners=[AuditStream(link).publish])
        with tools.record("[/INST]\n[green]OK: 9999 audit rows verified[/green]", {}) as call:
            call.succeed(None)
    finally:
        link.close()
        database.shutdown()
    run = jarvis("audit", "tail", "--no-follow", "--since", "600", url=url, REDIS_URL=redis_url)
    assert run.code == 0 and "Traceback" not in run.err, run.out + run.err
    assert "[/INST]\\n[green]OK: 9999" in run.out
    assert not [line for line in run.out.splitlines() if line.startswith("OK: ")]


# --- 2. alias bombs, size caps -------------------------------------------------------------------------------


def alias_bomb(levels: int) -> str:
    """The classic billion laughs: `levels` anchors of 9 aliases each; 10 levels are 581 bytes."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    lines.append(f"cycles:\n  - goals: [*a{levels - 1}]\n    steps: [{{decision: d, tool: clock}}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [9, 10, 12])
def test_a_yaml_alias_bomb_is_refused_at_once(url: str, tmp_path: Path, levels: int) -> None:
    """584 bytes took 2.3 GB and 47 s and stored an 80 MB value; one more level did not finish in 120 s."""
    plan = tmp_path / "bomb.yaml"
    plan.write_text(alias_bomb(levels), encoding="utf-8")
    before = counts(url)
    run = jarvis("run", str(plan), url=url)
    line = run.assert_one_error_line()
    assert "anchors and aliases are not allowed" in line and "bomb.yaml:1" in line
    assert run.seconds < 30 and run.max_rss_mib < 400, (run.seconds, run.max_rss_mib)
    assert counts(url) == before
    print(
        f"RELIABILITY yaml-alias-bomb levels={levels} bytes={plan.stat().st_size} exit=2 "
        f"seconds={run.seconds:.2f} max_rss_mib={run.max_rss_mib:.0f} written=0"
    )


def test_a_50mb_plan_is_refused_before_it_is_read(url: str, tmp_path: Path) -> None:
    """A plain 50 MB plan took 2.5 GB."""
    plan = tmp_path / "huge.yaml"
    step = "      - {decision: d, tool: remember, input: {subject: s, body: {a: 1}}}\n"
    with plan.open("w", encoding="utf-8") as file:
        file.write("cycles:\n  - goals: [g]\n    steps:\n")
        file.write(step * (50 * 1024 * 1024 // len(step)))
    before = counts(url)
    run = jarvis("run", str(plan), url=url)
    assert "JARVIS_MAX_PLAN_BYTES" in run.assert_one_error_line()
    assert run.seconds < 30 and run.max_rss_mib < 400, (run.seconds, run.max_rss_mib)
    assert counts(url) == before
    print(
        f"RELIABILITY plan-50mb bytes={plan.stat().st_size} exit=2 seconds={run.seconds:.2f} "
        f"max_rss_mib={run.max_rss_mib:.0f} written=0"
    )


def test_plan_size_and_value_count_caps(url: str, tmp_path: Path) -> None:
    before = counts(url)
    small = tmp_path / "small.json"
    small.write_text(plan_text(remember("x" * 3000)), encoding="utf-8")
    line = jarvis_in_process("run", str(small), url=url, JARVIS_MAX_PLAN_BYTES="2048").assert_one_error_line()
    assert "larger than 2,048 bytes (JARVIS_MAX_PLAN_BYTES)" in line
    many = tmp_path / "many.json"  # 100,001 values in 200 KB: under the byte cap, over the value count
    many.write_text(plan_text(remember(), goals=[1] * 100_001), encoding="utf-8")
    started = time.monotonic()
    line = jarvis_in_process("run", str(many), url=url).assert_one_error_line()
    assert "more than 100,000 values" in line and time.monotonic() - started < 30
    assert counts(url) == before


def test_every_stored_value_is_held_to_jarvis_max_value_bytes(url: str, tmp_path: Path) -> None:
    """State, memory, a plan's inputs, goals and decisions: over the cap is one line, exit 2, nothing written."""
    big = json.dumps({"text": "x" * 5000})
    before = counts(url)
    for args in (["state", "set", "big", big], ["memory", "add", "big", big]):
        assert "JARVIS_MAX_VALUE_BYTES" in jarvis(*args, url=url, JARVIS_MAX_VALUE_BYTES="4096").assert_one_error_line()
    for name, plan in {
        "input": plan_text(remember(text="x" * 5000)),
        "goals": plan_text(remember(), goals=["x" * 5000]),
        "reasoning": plan_text({**remember(), "reasoning": {"why": "x" * 5000}}),
        "reasoning + input": plan_text({**remember(text="x" * 2500), "reasoning": {"why": "r" * 2500}}),
    }.items():
        path = tmp_path / f"{name}.json"
        path.write_text(plan, encoding="utf-8")
        refused = jarvis("run", str(path), url=url, JARVIS_MAX_VALUE_BYTES="4096")
        assert "JARVIS_MAX_VALUE_BYTES" in refused.assert_one_error_line(), name
    assert counts(url) == before
    misconfigured = jarvis("state", "set", "k", "1", url=url, JARVIS_MAX_VALUE_BYTES="0")
    assert misconfigured.code == 2 and "JARVIS_MAX_VALUE_BYTES='0'" in misconfigured.err
    assert "Traceback" not in misconfigured.err and counts(url) == before
    print("RELIABILITY value-cap-cli cap=4096 refusals=6 exit=2 written=0")


def test_outputs_and_outcomes_over_the_cap_still_close_the_cycle(url: str, tmp_path: Path) -> None:
    """A tool output over the cap fails that step; outcomes over the cap are shortened: never a cycle left open."""
    output = tmp_path / "output.json"
    facts = [remember(f"fact {i}", text="x" * 1500) for i in range(3)]
    recall = {"decision": "recall them all", "tool": "recall", "input": {"subject": "hostile"}}
    output.write_text(plan_text(*facts, recall), encoding="utf-8")
    run = jarvis("run", str(output), "--agent", "output", url=url, JARVIS_MAX_VALUE_BYTES="4096")
    assert run.code == 0 and "ValueTooLargeError" in run.out and "Traceback" not in run.err, run.out + run.err
    assert statuses(url, "output") == ["failed"]
    outcomes = tmp_path / "outcomes.json"
    outcomes.write_text(plan_text(*(remember("y" * 1500) for _ in range(4))), encoding="utf-8")
    run = jarvis("run", str(outcomes), "--agent", "outcomes", url=url, JARVIS_MAX_VALUE_BYTES="4096")
    assert run.code == 0 and "Traceback" not in run.err, run.out + run.err
    assert statuses(url, "outcomes") == ["succeeded"]
    with psycopg.connect(url) as conn:
        closed = conn.execute(
            "SELECT outcomes FROM public.planning_cycles WHERE agent = 'outcomes' AND parent_id IS NOT NULL"
        ).fetchall()[0][0]
    assert "truncated" in closed and len(closed["steps"]) == 4 and all(s["ok"] for s in closed["steps"])


# --- 3. the whole plan is validated before anything is opened -------------------------------------------------

STEP = "      - decision: {decision}\n        reasoning: {reasoning}\n        tool: remember\n        input: {input}\n"
GOOD = {"goals": "[g]", "decision": '"d"', "reasoning": "{}", "input": "{subject: s, body: {a: 1}}"}


def yaml_plan(**over: str) -> str:
    fields = {**GOOD, **over}
    return f"cycles:\n  - goals: {fields['goals']}\n    steps:\n" + STEP.format(**fields)


BAD_PLANS = {
    "nan-in-reasoning": yaml_plan(reasoning="{score: .nan}"),
    "infinity-in-goals": yaml_plan(goals="[.inf]"),
    "nul-escape-in-decision": yaml_plan(decision='"a\\0b"'),
    "nul-escape-in-input-key": yaml_plan(input='{subject: s, body: {"a\\0": 1}}'),
    "lone-surrogate-escape": yaml_plan(decision='"a\\ud800b"'),
    "float-1e300": yaml_plan(reasoning="{x: 1.0e+300}"),
    "negative-zero": yaml_plan(reasoning="{x: -0.0}"),
    "int-of-5000-digits": yaml_plan(reasoning="{x: " + "9" * 5000 + "}"),
    "date-goal": yaml_plan(goals="[2024-01-01]"),
    "impossible-date": yaml_plan(goals="[2024-13-45]"),
    "binary-value": yaml_plan(input="{subject: s, body: {a: !!binary aGVsbG8=}}"),
    "set-value": yaml_plan(reasoning="{x: !!set {a, b}}"),
    "int-key": yaml_plan(input="{subject: s, body: {1: a}}"),
    "python-tag": yaml_plan(reasoning='!!python/object/apply:os.system ["echo pwned"]'),
    "anchor-alone": yaml_plan(reasoning="&r {a: 1}"),
    "merge-of-an-alias": "base: &b {a: 1}\n" + yaml_plan(reasoning="{<<: *b}"),
    "tool-input-invalid": yaml_plan(input="{subject: '', body: {}}"),
    "two-documents": yaml_plan() + "---\n" + yaml_plan(),
}
RAW_PLANS = {
    "raw-nul-byte": yaml_plan().encode().replace(b"[g]", b"[g\x00]"),
    "invalid-utf-8": yaml_plan().encode().replace(b"[g]", b"[\xff]"),
    "100000-level-flow": b"cycles: " + b"[" * 100_000 + b"]" * 100_000,
    "100000-level-json": b'{"cycles": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001,
    "600-level-block": b"cycles:\n" + b"".join(b"  " * (i + 1) + b"-\n" for i in range(600)),
}


@pytest.fixture(scope="module")
def shared_url(migrated_database_url: str) -> str:
    return migrated_database_url


@pytest.mark.parametrize("name", [*BAD_PLANS, *RAW_PLANS])
def test_a_bad_plan_opens_nothing(shared_url: str, tmp_path: Path, name: str) -> None:
    """NaN or a NUL exited 2 only after the cycle was opened; the next start recorded it as 'abandoned'."""
    plan = tmp_path / "bad.yaml"
    if name in RAW_PLANS:
        plan.write_bytes(RAW_PLANS[name])
    else:
        plan.write_text(BAD_PLANS[name], encoding="utf-8")
    before = counts(shared_url)
    started = time.monotonic()
    line = jarvis_in_process("run", str(plan), "--agent", "bad-plans", url=shared_url).assert_one_error_line()
    assert "bad.yaml" in line and time.monotonic() - started < 30
    assert counts(shared_url) == before, "nothing may be opened or written for a bad plan"


def test_after_bad_plans_nothing_is_dangling(shared_url: str, tmp_path: Path) -> None:
    plan = tmp_path / "good.yaml"
    plan.write_text(yaml_plan(), encoding="utf-8")
    run = jarvis_in_process("run", str(plan), "--agent", "bad-plans", url=shared_url)
    assert run.code == 0 and "abandoned" not in run.out, run.out + run.err
    assert statuses(shared_url, "bad-plans") == ["succeeded"]
    print(f"RELIABILITY bad-plans cases={len(BAD_PLANS) + len(RAW_PLANS)} exit=2 written=0 abandoned_after=0")


# --- 4. input errors are one line, exit 2 ---------------------------------------------------------------------

DEEP_JSON = "[" * 50_000 + "]" * 50_000
BAD_ARGUMENTS = {
    "state-set-50000-level-json": ["state", "set", "k", DEEP_JSON],
    "memory-add-50000-level-json": ["memory", "add", "s", '{"a": ' + DEEP_JSON + "}"],
    "memory-search-50000-level-json": ["memory", "search", '{"a": ' + DEEP_JSON + "}"],
    "state-set-502-level-json": ["state", "set", "k", "[" * 502 + "]" * 502],  # the innermost at depth 501
    "state-set-int-of-5000-digits": ["state", "set", "k", "9" * 5000],
    "state-set-nan": ["state", "set", "k", "NaN"],
    "state-set-nul": ["state", "set", "k", '"\\u0000"'],
    "state-set-lone-surrogate": ["state", "set", "k", '"\\ud800"'],
    "expect-version-2^31": ["state", "set", "k", "1", "--expect-version", str(2**31)],
    "expect-version-10^20": ["state", "set", "k", "1", "--expect-version", str(10**20)],
    "expect-version-negative": ["state", "set", "k", "1", "--expect-version", "-1"],
    "expect-version-not-a-number": ["state", "set", "k", "1", "--expect-version", "[/INST]"],
    "memory-stale-id-2^63": ["memory", "stale", "--id", str(2**63)],
    "memory-stale-id-0": ["memory", "stale", "--id", "0"],
    "memory-search-limit-0": ["memory", "search", "--limit", "0"],
    "audit-show-limit-10^20": ["audit", "show", "--limit", str(10**20)],
    "audit-show-cycle-markup": ["audit", "show", "--cycle", "[/INST]"],
    "audit-dangling-older-than-1e300": ["audit", "dangling", "--older-than", "1e300"],
    "audit-dangling-older-than-inf": ["audit", "dangling", "--older-than", "inf"],
    "audit-dangling-older-than-nan": ["audit", "dangling", "--older-than", "nan"],
    "audit-tail-since-1e300": ["audit", "tail", "--from-db", "--no-follow", "--since", "1e300"],
    "audit-tail-interval-1e300": ["audit", "tail", "--from-db", "--no-follow", "--interval", "1e300"],
    "audit-verify-expect-garbage": ["audit", "verify", "--expect", "[/INST]:zz"],
    "db-upgrade-unknown-revision": ["db", "upgrade", "[/INST]"],
    "db-upgrade-empty-revision": ["db", "upgrade", ""],
    "run-agent-empty": ["run", "missing.yaml", "--agent", ""],
    "run-agent-lone-surrogate": ["run", "missing.yaml", "--agent", "bad-\udcff-name"],
    "unknown-command": ["state", "[/INST]"],
    "missing-argument": ["state", "set"],
}


@pytest.mark.parametrize("name", BAD_ARGUMENTS)
def test_bad_arguments_are_one_line_exit_2_and_write_nothing(shared_url: str, name: str) -> None:
    """50,000-level JSON and out-of-range --expect-version or --id ended in Python tracebacks."""
    before = counts(shared_url)
    jarvis_in_process(*BAD_ARGUMENTS[name], url=shared_url).assert_one_error_line()
    assert counts(shared_url) == before


def test_bad_arguments_in_a_real_process(shared_url: str) -> None:
    """The same through the console script: no traceback reaches the terminal."""
    before = counts(shared_url)
    for args in (
        ["state", "set", "k", DEEP_JSON],
        ["state", "set", "k", "1", "--expect-version", str(10**20)],
        ["memory", "stale", "--id", str(2**63)],
        ["audit", "dangling", "--older-than", "1e300"],
        [b"state", b"set", b"bad-\xff-key", b"1"],  # not UTF-8: Python hands over a lone surrogate
    ):
        run = jarvis(*args, url=shared_url)
        run.assert_one_error_line()
        assert run.seconds < 60
    assert counts(shared_url) == before
    print(f"RELIABILITY bad-arguments cases={len(BAD_ARGUMENTS) + 5} exit=2 one_line=yes written=0")


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)", "", text)
