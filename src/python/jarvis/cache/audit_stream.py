"""The live audit event stream: every committed audit row, announced on a capped Redis Stream.

Events are published by the audit API's listeners, which run only after the
row's transaction committed: a rolled-back append is never announced. Events
carry ids, kinds, names and times, not payloads (those stay in PostgreSQL).
The stream is a projection: when Redis is down or the stream was trimmed,
`jarvis audit tail --from-db` replays the same history from PostgreSQL.

Anyone who can write to Redis can XADD, so every event carries a MAC field
(`jarvis.cache.auth`) over its fields and the stream's name. A reader drops
and counts events whose MAC does not hold (forged, unsigned, copied from
another database's stream), and drops a second copy of an event it already
delivered (a replayed genuine event).
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jarvis.cache.auth import Authenticator
from jarvis.cache.link import RedisLink
from jarvis.db.audit import AuditEvent

if TYPE_CHECKING:  # the [redis] extra; only a link (jarvis.cache.link) imports it at run time
    import redis

log = logging.getLogger("jarvis.cache")

STREAM_MAXLEN = 100_000
MAC_FIELD = "mac"
PURPOSE = "audit"
REMEMBERED_EVENTS = 100_000


@dataclass(frozen=True)
class StreamEvent:
    id: str
    fields: dict[str, str]


class AuditStream:
    def __init__(self, link: RedisLink, *, maxlen: int = STREAM_MAXLEN) -> None:
        self.link = link
        self.maxlen = maxlen
        self.name = link.key("audit")

    def publish(self, event: AuditEvent) -> None:
        """An audit listener: XADD the event (approximately capped); silently skipped while Redis is down."""
        fields: Any = sign_fields(self.link.auth, self.name, event.as_strings())
        self.link.run(lambda r: r.xadd(self.name, fields, maxlen=self.maxlen, approximate=True), None)


class StreamReader:
    """Reads the stream from a position and remembers it, so a reconnect resumes without gaps or repeats."""

    def __init__(self, link: RedisLink, *, last_id: str = "$") -> None:
        self.link = link
        self.stream = link.key("audit")
        self.last_id = last_id
        self.forged = 0
        """Events dropped because their MAC did not hold."""
        self.replayed = 0
        """Authentic events dropped because this reader had already delivered them."""
        self._delivered: OrderedDict[tuple[str, str], None] = OrderedDict()

    def start_from_latest(self) -> None:
        """Pin '$' to a concrete id now, so events published before the first read are not skipped."""
        if self.last_id == "$":
            latest: Any = self.link.run(lambda r: r.xrevrange(self.stream, count=1), None)
            self.last_id = _text(latest[0][0]) if latest else "0-0"

    def read(self, *, block_ms: int = 1000, count: int = 500) -> list[StreamEvent]:
        """The next events after the reader's position, waiting up to `block_ms`; empty while Redis is unreachable."""
        self.start_from_latest()

        def xread(_: redis.Redis) -> list[StreamEvent]:
            blocking = self.link.blocking_client(block_ms / 1000)  # a socket timeout longer than the wait
            response: Any = blocking.xread({self.stream: self.last_id}, block=block_ms, count=count)
            events = []
            for _, entries in response or []:
                for entry_id, fields in entries:
                    events.append(StreamEvent(_text(entry_id), {_text(k): _text(v) for k, v in fields.items()}))
            return events

        events = self.link.run(xread, None)
        if events is None:  # Redis unavailable: wait a little, the position is kept
            time.sleep(min(block_ms / 1000, 0.5))
            return []
        if events:
            self.last_id = events[-1].id  # past the dropped ones too: they are never read again
        return self._authentic(events)

    def _authentic(self, events: list[StreamEvent]) -> list[StreamEvent]:
        accepted: list[StreamEvent] = []
        forged = replayed = 0
        for event in events:
            fields = verified_fields(self.link.auth, self.stream, event.fields)
            if fields is None:
                forged += 1
                continue
            identity = (fields.get("row_id", ""), fields.get("kind", ""))
            if identity in self._delivered:
                replayed += 1
                continue
            self._delivered[identity] = None
            if len(self._delivered) > REMEMBERED_EVENTS:
                self._delivered.popitem(last=False)
            accepted.append(StreamEvent(event.id, fields))
        if forged or replayed:
            self.forged += forged
            self.replayed += replayed
            log.warning(
                "dropped %d forged or unsigned and %d replayed audit stream event(s) on %s (%d and %d so far); "
                "the audit trail in PostgreSQL is unaffected (`jarvis audit tail --from-db`). Events signed with "
                "another key mean this process's JARVIS_CACHE_KEY differs from the agent's",
                forged,
                replayed,
                self.stream,
                self.forged,
                self.replayed,
            )
        return accepted

    def trimmed_past_position(self) -> bool:
        """True if entries after our position were trimmed away (the reader fell too far behind)."""
        first: Any = self.link.run(lambda r: r.xrange(self.stream, count=1), None)
        if not first or self.last_id in ("$", "0-0"):
            return False
        first_id = _text(first[0][0])
        return _id_tuple(first_id) > _id_tuple(self.last_id) and self.last_id != first_id


def _canonical(fields: dict[str, str]) -> bytes:
    return json.dumps(sorted(fields.items()), ensure_ascii=False, separators=(",", ":")).encode()


def sign_fields(auth: Authenticator, stream: str, fields: dict[str, str]) -> dict[str, str]:
    """`fields` plus a MAC field binding them to `stream`."""
    unsigned = {k: v for k, v in fields.items() if k != MAC_FIELD}
    return {**unsigned, MAC_FIELD: auth.sign(PURPOSE, stream, _canonical(unsigned))}


def verified_fields(auth: Authenticator, stream: str, fields: dict[str, str]) -> dict[str, str] | None:
    """The fields without their MAC if it holds for `stream`; None otherwise."""
    mac = fields.get(MAC_FIELD)
    if mac is None:
        return None
    unsigned = {k: v for k, v in fields.items() if k != MAC_FIELD}
    return unsigned if auth.verify(PURPOSE, stream, _canonical(unsigned), mac) else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id_tuple(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)
