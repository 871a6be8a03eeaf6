"""No downgrade may drop or rewrite an audit table that holds rows, unless someone decided so explicitly.

An append-only trail that one mistyped revision destroys is not append-only
for its users. The check runs inside each migration's `downgrade()`, so it
holds for `jarvis db downgrade`, the library and plain `alembic downgrade`
alike, and it runs in the migration's transaction: a refusal rolls back every
step. Going through needs the decision passed in: `jarvis db downgrade
--destroy-audit-trail` (which exports the trail first), or `alembic -x
destroy_audit_trail=1 downgrade ...`.
"""

from __future__ import annotations

from alembic import context, op
from sqlalchemy import text

from jarvis.config import ExitCode, JarvisError

DESTROY_FLAG = "destroy_audit_trail"


class AuditTrailGuardError(JarvisError, RuntimeError):
    """A downgrade would drop or rewrite audit rows and nobody decided to destroy them."""

    exit_code = ExitCode.BAD_INPUT


def destruction_allowed() -> bool:
    if context.config.attributes.get(DESTROY_FLAG):
        return True
    return context.get_x_argument(as_dictionary=True).get(DESTROY_FLAG) == "1"


def audit_row_counts(tables: tuple[str, ...]) -> dict[str, int]:
    """Rows held by each of `tables` that exists (those that do not hold nothing)."""
    bind = op.get_bind()
    counts: dict[str, int] = {}
    for table in tables:
        if bind.execute(text("SELECT to_regclass(:t)"), {"t": f"public.{table}"}).scalar() is not None:
            counts[table] = int(bind.execute(text(f"SELECT count(*) FROM public.{table}")).scalar_one())
    return counts


def refuse_to_destroy_audit_rows(revision: str, tables: tuple[str, ...]) -> None:
    """Raise unless the audit tables this step drops or rewrites are empty, or destruction was decided."""
    if destruction_allowed():
        return
    holding = {table: n for table, n in audit_row_counts(tables).items() if n}
    if holding:
        listed = ", ".join(f"{table} ({n} rows)" for table, n in holding.items())
        raise AuditTrailGuardError(
            f"refused: downgrading migration {revision} would drop or rewrite audit tables that hold rows: {listed}. "
            "Nothing was changed. Keep the trail (`jarvis db upgrade`), or export it and destroy it deliberately: "
            "`jarvis db downgrade REV --destroy-audit-trail` (writes a verifiable export first)"
        )
