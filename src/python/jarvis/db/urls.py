"""PostgreSQL URL spelling: libpq for psycopg, `postgresql+psycopg` for SQLAlchemy."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def libpq_url(url: str) -> str:
    """The URL as psycopg (libpq) wants it, whatever driver suffix it came with."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def sqlalchemy_url(url: str) -> str:
    """The URL with the psycopg 3 driver named, so SQLAlchemy never falls back to psycopg2."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql+psycopg"))


def with_database(url: str, database: str) -> str:
    """The same server and credentials, another database."""
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")
