"""The agent runtime: where config, the database and (optionally) Redis meet.

`Agent.start()` connects, migrates, takes the agent's lease and closes
work a previous process left dangling. `run_cycle()` is one planning cycle:
open it, ask the planner for steps, record each decision, run each tool
through the audited tool-call API, close it with the outcomes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jarvis.agent.builtin_tools import register_builtin_tools
from jarvis.agent.plan import Planner, Step
from jarvis.agent.tools import ToolInputError, ToolRegistry, UnknownToolError
from jarvis.agent.witnessing import (
    CheckpointContradictedError,
    ImplausibleSealTimeError,
    ensure_signing_key,
    seal_and_sign,
)
from jarvis.cache import (
    AuditStream,
    CachedStateStore,
    CycleLease,
    CycleLock,
    RedisLink,
    ensure_cache_key,
    namespace_for,
)
from jarvis.config import JarvisError, Settings
from jarvis.db import Database, MemoryStore, RuntimeSchema, StateStore, open_database
from jarvis.db.audit import (
    AuditListener,
    CycleClosedError,
    DanglingStart,
    PlanningLog,
    SealerBusyError,
    ToolCallLog,
    close_dangling,
)
from jarvis.db.audit.tool_calls import CANCELLATIONS, describe_error
from jarvis.db.base import Status
from jarvis.db.jsonb import ValueTooLargeError, ensure_jsonb
from jarvis.db.liveness import BEATS_PER_TTL, Lease
from jarvis.db.migrate import upgrade_to_head

log = logging.getLogger("jarvis.agent")


class AgentAlreadyRunningError(JarvisError, RuntimeError):
    """Another process runs an agent of the same name against the same database."""


@dataclass
class StepOutcome:
    decision: str
    tool: str
    ok: bool
    output: Any = None
    error: str | None = None
    tool_call_id: uuid.UUID | None = None

    def as_json(self) -> dict[str, Any]:
        """The step as stored in the cycle's outcomes: decision, tool, ok, and its call id or error if any."""
        result: dict[str, Any] = {"decision": self.decision, "tool": self.tool, "ok": self.ok}
        if self.tool_call_id:
            result["tool_call_id"] = str(self.tool_call_id)
        if self.error:
            result["error"] = self.error
        return result


@dataclass
class CycleResult:
    cycle_id: uuid.UUID
    status: Status
    steps: list[StepOutcome] = field(default_factory=list)
    fencing_token: int | None = None


StepCallback = Callable[[int, Step, StepOutcome], None]


class Agent:
    """One running agent. Use `Agent.start(settings)` and `shutdown()` (or `with`)."""

    def __init__(
        self,
        database: Database,
        *,
        name: str = "jarvis",
        listeners: Sequence[AuditListener] = (),
        redis_link: RedisLink | None = None,
    ) -> None:
        self.name = name
        self.database = database
        self.listeners = list(listeners)
        self.redis = redis_link
        self.state: StateStore | CachedStateStore = StateStore(database)
        self.cycle_lock: CycleLock | None = None
        if redis_link is not None:
            self.state = CachedStateStore(StateStore(database), redis_link)
            self.listeners.append(AuditStream(redis_link).publish)
            self.cycle_lock = CycleLock(redis_link, name)
        self.memory = MemoryStore(database)
        self.schema = RuntimeSchema(database)
        self.tool_calls = ToolCallLog(database, listeners=self.listeners)
        self.planning = PlanningLog(database, agent=name, listeners=self.listeners)
        self.tools = ToolRegistry()
        register_builtin_tools(self.tools, state=self.state, memory=self.memory, schema=self.schema)
        self._lease: Lease | None = None
        """This process's lease on the agent's name, renewed by its heartbeat while the agent runs."""
        self.closed_at_start: list[DanglingStart] = []

    @classmethod
    def start(
        cls, settings: Settings, *, name: str = "jarvis", migrate: bool = True, listeners: Sequence[AuditListener] = ()
    ) -> Agent:
        """An agent ready to work from settings: the database opened (migrated unless migrate=False), the signing key
        checked, the agent's lease taken (and kept renewed), and work dangling from earlier runs closed.
        """
        if migrate:
            upgrade_to_head(settings)
        ensure_signing_key(settings)
        database = open_database(settings)
        link = None
        if settings.redis_url:
            link = RedisLink(settings.redis_url, namespace=namespace_for(database), auth_key=ensure_cache_key(settings))
        else:
            log.info("REDIS_URL is unset: running without Redis (no state cache, no live audit stream)")
        agent = cls(database, name=name, listeners=listeners, redis_link=link)
        try:
            agent.take_instance_lock()
            agent.closed_at_start = close_dangling(agent.database, agent=name, listeners=agent.listeners)
            for dangling in agent.closed_at_start:
                log.warning(
                    "closed dangling %s %s (%s, started %s) as abandoned",
                    dangling.table,
                    dangling.id,
                    dangling.name,
                    dangling.started_at.isoformat(),
                )
        except BaseException:
            agent.shutdown()
            raise
        return agent

    def take_instance_lock(self) -> None:
        """Take the lease on the agent's name and keep it renewed: one live process per agent and database.

        Holding it is what makes closing dangling work at start-up safe: no other live process of this
        agent can own those start rows. A lease row (jarvis.db.liveness), not a lock held in an open
        transaction: nothing pins a server connection or waits idle in a transaction, and only the app
        role can take one.
        """
        lease = Lease(self.database, self.name)
        if not lease.take():
            raise AgentAlreadyRunningError(
                f"another process is already running agent {self.name!r} on this database (it renews its lease "
                f"every {lease.ttl / BEATS_PER_TTL:g} s; a crashed one's lease expires within JARVIS_LEASE_TTL="
                f"{lease.ttl:g} s); stop it first or choose another name (--agent)"
            )
        lease.keep()
        self._lease = lease

    def run_tool(self, name: str, raw_input: Any, *, cycle_id: uuid.UUID | None = None) -> StepOutcome:
        """Validate the input, then run the tool inside an audited call. Tool failures become outcomes."""
        try:
            tool = self.tools.get(name)
            validated = tool.validate(raw_input)
        except (UnknownToolError, ToolInputError) as refused:
            return StepOutcome("", name, ok=False, error=str(refused))
        tool_failure: Exception | None = None
        try:
            with self.tool_calls.record(name, validated.model_dump(mode="json"), cycle_id=cycle_id) as call:
                try:
                    call.succeed(tool.function(validated))
                except Exception as failure:
                    tool_failure = failure
                    raise
        except Exception as error:
            if error is not tool_failure:
                raise  # the audit trail itself failed: never swallow that
            return StepOutcome("", name, ok=False, error=describe_error(error), tool_call_id=call.id)
        return StepOutcome("", name, ok=True, output=call.output, tool_call_id=call.id)

    def run_cycle(self, goals: Sequence[Any], planner: Planner, *, on_step: StepCallback | None = None) -> CycleResult:
        """Run one planning cycle: open it with `goals`, run each step the planner yields as an audited decision and
        tool call, close it with its outcome. A failing tool fails its step, not the cycle's bookkeeping; an
        exception or interruption still closes the cycle (failed or cancelled) before it propagates.
        """
        if self._lease is not None and self._lease.lost:
            raise AgentAlreadyRunningError(
                f"agent {self.name!r} lost its lease to another process running it; stop this one"
            )
        lease = self.cycle_lock.acquire() if self.cycle_lock is not None else None
        try:
            return self._run_cycle(goals, planner, on_step, lease)
        finally:
            if lease is not None and self.cycle_lock is not None:
                self.cycle_lock.release(lease)

    _unclosed_cycle: tuple[uuid.UUID, dict[str, Any]] | None = None
    """A cycle that failed while the database was unreachable: closed as failed before the next one opens."""

    def _run_cycle(
        self, goals: Sequence[Any], planner: Planner, on_step: StepCallback | None, lease: CycleLease | None
    ) -> CycleResult:
        if self._unclosed_cycle is not None:
            unclosed, outcomes = self._unclosed_cycle
            try:
                self.planning.close_cycle(unclosed, "failed", outcomes)
            except CycleClosedError:
                pass  # its completion landed after all (the answer to the last attempt was lost)
            self._unclosed_cycle = None
        cycle_id = self.planning.open_cycle(list(goals))
        result = CycleResult(cycle_id, "started", fencing_token=lease.fencing_token if lease else None)
        try:
            for index, step in enumerate(planner.steps(goals)):
                self.planning.record_decision(
                    cycle_id, step.decision, {**step.reasoning, "tool": step.tool, "input": step.input}
                )
                outcome = self.run_tool(step.tool, step.input, cycle_id=cycle_id)
                outcome.decision = step.decision
                result.steps.append(outcome)
                if lease is not None and self.cycle_lock is not None:
                    self.cycle_lock.extend(lease)  # long cycles keep the lock; the database stays the backstop
                if on_step is not None:
                    on_step(index, step, outcome)
        except CANCELLATIONS as interruption:
            result.status = "cancelled"
            self.planning.close_cycle(cycle_id, "cancelled", self._outcomes(result, describe_error(interruption)))
            raise
        except Exception as error:  # the planner (an LLM), or the audit trail itself after its retries
            self._close_failed_cycle(result, error)
            raise
        result.status = "succeeded" if all(step.ok for step in result.steps) else "failed"
        try:
            self.planning.close_cycle(cycle_id, result.status, self._outcomes(result))
        except Exception as error:
            self._close_failed_cycle(result, error)
            raise
        self.seal()
        return result

    def _close_failed_cycle(self, result: CycleResult, error: Exception) -> None:
        """Best effort: close the cycle as failed with the error in its outcomes, never hiding `error`.

        If even that cannot be written (the database is gone), the next `run_cycle` writes it first,
        so one outage never wedges the agent on its own open cycle.
        """
        result.status = "failed"
        outcomes = fitted({**self._outcomes(result), "error": describe_error(error)})
        try:
            self.planning.close_cycle(result.cycle_id, "failed", outcomes)
        except CycleClosedError:
            pass  # the completion landed after all
        except Exception as unwritten:
            self._unclosed_cycle = (result.cycle_id, outcomes)
            log.warning(
                "cycle %s failed (%s) and could not be closed yet (%s); the next cycle closes it first",
                result.cycle_id,
                describe_error(error),
                describe_error(unwritten),
            )

    def seal(self) -> None:
        """Seal and sign without waiting: another sealer at work links these rows too, or the next seal will."""
        try:
            seal_and_sign(self.database, self.database.settings, redis_link=self.redis)
        except SealerBusyError as busy:
            log.warning("sealing skipped, rows stay queued: %s", busy)
        except (CheckpointContradictedError, ImplausibleSealTimeError) as tampering:
            log.error("the audit trail was tampered with; rows stay queued, nothing is signed: %s", tampering)

    @staticmethod
    def _outcomes(result: CycleResult, interrupted: str | None = None) -> dict[str, Any]:
        outcomes: dict[str, Any] = {
            "steps": [step.as_json() for step in result.steps],
            "failed_steps": sum(not step.ok for step in result.steps),
        }
        if result.fencing_token is not None:
            outcomes["fencing_token"] = result.fencing_token
        if interrupted:
            outcomes["interrupted"] = interrupted
        return fitted(outcomes)

    def shutdown(self) -> None:
        """Seal what is queued, release the agent's lease, dispose the pool. Safe to call twice."""
        lease, self._lease = self._lease, None
        try:
            if lease is not None:
                try:
                    self.seal()
                except Exception as error:  # the next seal links these rows; never fail a shutdown over it
                    log.warning("could not seal the audit trail at shutdown: %s", error)
                finally:
                    lease.release()  # the agent may start again at once
        finally:
            self.database.shutdown()
            if self.redis is not None:
                self.redis.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


TRUNCATED = "shortened to fit JARVIS_MAX_VALUE_BYTES; every decision and tool call is in decision_log and tool_calls"


def fitted(outcomes: dict[str, Any]) -> dict[str, Any]:
    """Cycle outcomes that fit JARVIS_MAX_VALUE_BYTES, so a cycle can always be closed.

    Each step's decision and error are already recorded in full (decision_log, tool_calls); when all of
    them together are too large for one value, the outcomes keep each step's tool, result and call id,
    and if even that is too large, the counts.
    """
    try:
        ensure_jsonb(outcomes, what="cycle outcomes")
        return outcomes
    except ValueTooLargeError:
        pass
    steps = outcomes.get("steps", [])
    compact = {
        **outcomes,
        "steps": [{k: step[k] for k in ("tool", "ok", "tool_call_id") if k in step} for step in steps],
        "truncated": TRUNCATED,
    }
    for key in ("error", "interrupted"):
        if key in compact:
            compact[key] = str(compact[key])[:500]
    try:
        ensure_jsonb(compact, what="cycle outcomes")
        return compact
    except ValueTooLargeError:
        pass
    counts = {k: v for k, v in compact.items() if k in ("failed_steps", "fencing_token")}
    for key in ("error", "interrupted"):  # at most 600 bytes even if every character needs a \u escape
        if key in compact:
            counts[key] = compact[key][:100]
    return {**counts, "step_count": len(steps), "truncated": TRUNCATED}
