"""The declarative base every Jarvis table derives from."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import DateTime, MetaData
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase

# Deterministic constraint names, so migrations can name what they drop.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JsonValue = Any
"""A JSON document as Python holds it: dict, list, str, int, float, bool or None."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {JsonValue: JSONB, datetime: DateTime(timezone=True)}


AUDIT_TABLES = ("planning_cycles", "tool_calls", "decision_log")
"""The agent's record: append-only two-row lifecycles and decisions."""

CHAINED_TABLES = (*AUDIT_TABLES, "schema_changes")
"""Append-only tables whose rows are bound into the hash chain, in the order they are chained on ties."""

CompletionStatus = Literal["succeeded", "failed", "cancelled", "abandoned"]
"""How a tool call or planning cycle ended: the status of its completion row."""

Status = Literal["started", "succeeded", "failed", "cancelled", "abandoned"]
"""A lifecycle row's status: `started` for the start row, a CompletionStatus for the completion."""

COMPLETION_STATUSES: tuple[CompletionStatus, ...] = get_args(CompletionStatus)
STATUSES: tuple[Status, ...] = get_args(Status)
"""The values the tables' status CHECK constraints allow (the Literals, for code that checks at run time)."""
