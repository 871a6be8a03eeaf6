"""Agent liveness as a lease row renewed by heartbeat, not a lock in a transaction held open (issue 22: B10, B11).

Until now a running agent proved it was alive by holding a transaction-level advisory lock in a
transaction it kept open for its whole life. That failed three ways:

- `idle_in_transaction_session_timeout` (a common setting) ends that session silently, and
  `jarvis audit dangling --close` then closed a live agent's running work as "abandoned";
- behind a transaction pooler the held transaction pins a server connection for the agent's
  life: with one server connection in the pool, `jarvis demo` waited for it until PgBouncer's
  `query_wait_timeout`;
- an advisory lock needs no privilege: a SELECT-only auditor login could take the key and make
  every start of that agent refuse ("already running").

Now each agent name has at most one row in `agent_leases`: who holds it (the SHA-256 of a
random id per process: the id itself is the holder's secret) and until when, by the database's
clock. The agent takes it at start, renews it
from a heartbeat (every third of `JARVIS_LEASE_TTL`), and deletes it at a clean shutdown; a
crashed holder's lease simply expires. Nothing is held between statements, so any pooler and
any idle timeout are fine. The table is mutable state, not part of the audit trail, but only
these SECURITY DEFINER functions write it, and only the database's app role may call them:

- `jarvis_take_lease(agent, holder, ttl_seconds)`: the lease's new expiry, or NULL when another
  holder's lease has not expired (the agent is running elsewhere);
- `jarvis_renew_lease(agent, holder, ttl_seconds)`: the new expiry, or NULL when the lease is no
  longer this holder's (it lapsed and someone took or released it meanwhile);
- `jarvis_release_lease(agent, holder)`: whether this holder's lease was there to delete.

The holder id is a secret, because whoever knows it can renew that lease with a tiny time to
live and make a live agent's work look abandoned: the app role is a member of the auditor role,
so anything the auditor may read, any app-role login may read too. The table keeps only
`sha256(holder)` (`holder_hash`), the functions compare hashes, and the auditor may read only
`agent`, `taken_at`, `expires_at` and `ttl` (column privileges; `jarvis audit dangling` lists
running agents from them). A time to live under `MIN_TTL_SECONDS` is refused, and `ttl` (the
holder's own) lets a sweep wait one more lifetime after expiry before it calls the agent dead.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SAFE_PATH = "SET search_path = pg_catalog, pg_temp"

MAX_TTL_SECONDS = 3600
"""Longest lease a holder may ask for: a crashed holder blocks its agent name at most this long."""

MIN_TTL_SECONDS = 1
"""Shortest lease a holder may ask for (JARVIS_LEASE_TTL's floor too): no lease is made to lapse at once."""

HOLDER_HASH = "pg_catalog.sha256(pg_catalog.uuid_send(p_holder))"
"""What the table keeps of a holder id: its SHA-256, never the id (whoever knows it can renew the lease)."""

CHECK_ARGUMENTS = f"""
  IF p_agent IS NULL OR p_holder IS NULL OR p_ttl IS NULL
     OR NOT (p_ttl >= {MIN_TTL_SECONDS} AND p_ttl <= {MAX_TTL_SECONDS}) THEN
    RAISE EXCEPTION 'jarvis: a lease needs an agent name, a holder id and a time to live of [%, %] seconds, not %',
        {MIN_TTL_SECONDS}, {MAX_TTL_SECONDS}, p_ttl USING ERRCODE = 'invalid_parameter_value';
  END IF;"""

TAKE = f"""
CREATE FUNCTION public.jarvis_take_lease(p_agent text, p_holder uuid, p_ttl double precision)
RETURNS timestamptz LANGUAGE plpgsql SECURITY DEFINER {SAFE_PATH} AS $$
DECLARE
  until timestamptz;
BEGIN{CHECK_ARGUMENTS}
  -- Free, expired, or already this holder's: it is (still) ours until the database's clock says otherwise.
  INSERT INTO public.agent_leases AS l (agent, holder_hash, taken_at, expires_at, ttl)
  VALUES (p_agent, {HOLDER_HASH}, pg_catalog.clock_timestamp(),
          pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => p_ttl), p_ttl)
  ON CONFLICT (agent) DO UPDATE
     SET holder_hash = excluded.holder_hash,
         taken_at = CASE WHEN l.holder_hash = excluded.holder_hash THEN l.taken_at ELSE excluded.taken_at END,
         expires_at = excluded.expires_at,
         ttl = excluded.ttl
   WHERE l.holder_hash = excluded.holder_hash OR l.expires_at <= pg_catalog.clock_timestamp()
  RETURNING l.expires_at INTO until;
  RETURN until;  -- NULL: another holder's lease is live
END $$"""

RENEW = f"""
CREATE FUNCTION public.jarvis_renew_lease(p_agent text, p_holder uuid, p_ttl double precision)
RETURNS timestamptz LANGUAGE plpgsql SECURITY DEFINER {SAFE_PATH} AS $$
DECLARE
  until timestamptz;
BEGIN{CHECK_ARGUMENTS}
  UPDATE public.agent_leases l
     SET expires_at = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => p_ttl), ttl = p_ttl
   WHERE l.agent = p_agent AND l.holder_hash = {HOLDER_HASH}
  RETURNING l.expires_at INTO until;
  RETURN until;  -- NULL: no longer this holder's lease
END $$"""

RELEASE = f"""
CREATE FUNCTION public.jarvis_release_lease(p_agent text, p_holder uuid)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER {SAFE_PATH} AS $$
BEGIN
  DELETE FROM public.agent_leases l WHERE l.agent = p_agent AND l.holder_hash = {HOLDER_HASH};
  RETURN FOUND;
END $$"""

READABLE = ("agent", "taken_at", "expires_at", "ttl")
"""The columns the auditor role (and so the app role, its member) may read: who runs, since when, until when."""

SIGNATURES = (
    "public.jarvis_take_lease(text, uuid, double precision)",
    "public.jarvis_renew_lease(text, uuid, double precision)",
    "public.jarvis_release_lease(text, uuid)",
)


def upgrade() -> None:
    app, auditor = op.get_bind().execute(text("SELECT app_role, auditor_role FROM public.trail_info")).one()
    op.execute(
        "CREATE TABLE public.agent_leases ("
        "agent text NOT NULL, holder_hash bytea NOT NULL, taken_at timestamp with time zone NOT NULL, "
        "expires_at timestamp with time zone NOT NULL, ttl double precision NOT NULL, "
        "CONSTRAINT pk_agent_leases PRIMARY KEY (agent))"
    )
    op.execute("REVOKE ALL ON public.agent_leases FROM PUBLIC")
    # Never the holder's hash: the app role is a member of the auditor role (0003).
    op.execute(f"GRANT SELECT ({', '.join(READABLE)}) ON public.agent_leases TO {auditor}")
    for function in (TAKE, RENEW, RELEASE):
        op.execute(function)
    for signature in SIGNATURES:
        op.execute(f"REVOKE EXECUTE ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {app}")


def downgrade() -> None:
    for signature in SIGNATURES:
        op.execute(f"DROP FUNCTION {signature}")
    op.execute("DROP TABLE public.agent_leases")
