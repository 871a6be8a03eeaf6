"""Time in a witness log: the signer's clock bounds the database's.

A checkpoint carries two times: `sealed_at`, the database's clock when the head was sealed, and
`signed_at`, the signer's own clock. The database's is what a superuser can bend (swap
`jarvis_seal()` for one seal so it reports an hour earlier, then restore it). An honest signer
watched the seal happen, so its seal time lies within the signing, runs strictly forward from one
checkpoint to the next, and never precedes the previous checkpoint's signing; `timeline_problems`
names every checkpoint of a log that breaks that, and readers take `signed_at` as a checkpoint's time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from jarvis.witness.checkpoint import Checkpoint

CLOCK_SKEW = timedelta(seconds=5)
"""How far the database's clock and the signer's may disagree. The signer refuses a seal time more
than this outside the moments it began and finished the seal; a reader reports a checkpoint sealed
more than this after it was signed, or before the previous checkpoint was signed."""

SEAL_AGE_LIMIT = timedelta(seconds=60)
"""How much earlier than its signing a checkpoint's seal may be (the seal waited for the sealer's lock,
or linked a large backlog). The signer seals again rather than sign an older seal time; a reader reports one."""

_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def plausible(moment: datetime) -> bool:
    return _EARLIEST <= moment < _LATEST


def seal_time_problem(sealed_at: datetime, before: datetime, after: datetime, last: Checkpoint | None) -> str | None:
    """Why a signer must not sign `sealed_at`, or None.

    `before` and `after` are the signer's clock around the seal; `last` the log's newest checkpoint
    of this trail. The database's time must fall inside the seal (give or take CLOCK_SKEW), be later
    than the previous seal time, and not precede the previous checkpoint's signing.
    """
    if not plausible(sealed_at):
        return "a time no honest clock gives"
    if sealed_at < before - CLOCK_SKEW or sealed_at > after + CLOCK_SKEW:
        return (
            f"{(sealed_at - before).total_seconds():+.3f} s from this machine's clock when the seal began "
            f"({before.isoformat()}); the database's clock must agree with it within {CLOCK_SKEW.total_seconds():g} s"
        )
    if last is not None:
        if sealed_at <= datetime.fromisoformat(last.sealed_at):
            return f"not later than the previous checkpoint's seal time {last.sealed_at}"
        if sealed_at < datetime.fromisoformat(last.signed_at) - CLOCK_SKEW:
            return f"earlier than the previous checkpoint was signed ({last.signed_at})"
    return None


def timeline_problems(entries: Iterable[tuple[int, Checkpoint]]) -> list[tuple[int, str]]:
    """(entry number, why) for each checkpoint, of one trail in log order, whose seal time an honest signer refuses.

    Seal times run strictly forward, never before the previous checkpoint was signed, and within
    SEAL_AGE_LIMIT before (CLOCK_SKEW after) their own signing. A checkpoint dated where no clock
    should be is left to the caller, which reports it on its own.
    """
    found: list[tuple[int, str]] = []
    previous: Checkpoint | None = None
    for number, checkpoint in entries:
        sealed = datetime.fromisoformat(checkpoint.sealed_at)
        signed = datetime.fromisoformat(checkpoint.signed_at)
        label = f"checkpoint {checkpoint.seq}:{checkpoint.head_hash[:12]}… sealed at {checkpoint.sealed_at}"
        why: str | None = None
        if not plausible(sealed):
            why = None
        elif previous is not None and sealed <= datetime.fromisoformat(previous.sealed_at):
            why = f"{label} goes backwards (the checkpoint before it was sealed at {previous.sealed_at})"
        elif previous is not None and sealed < datetime.fromisoformat(previous.signed_at) - CLOCK_SKEW:
            why = f"{label} is before the checkpoint before it was signed ({previous.signed_at})"
        elif not signed - SEAL_AGE_LIMIT <= sealed <= signed + CLOCK_SKEW:
            why = f"{label} strays from its signing at {checkpoint.signed_at}"
        if why is not None:
            found.append(
                (
                    number,
                    f"{why}: the database reported a seal time the signer's clock contradicts (its clock or "
                    "jarvis_seal was tampered with); rows are bounded by the signer's clock instead",
                )
            )
        previous = checkpoint
    return found
