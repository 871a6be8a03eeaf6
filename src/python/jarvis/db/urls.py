"""PostgreSQL URL spelling: libpq for psycopg, `postgresql+psycopg` for SQLAlchemy.

Each URL is read by the library that will use it: SQLAlchemy's `make_url` for the
URL SQLAlchemy connects with, libpq's own parser (`psycopg.conninfo`) for the
database name. A URL handed to libpq is *not* rebuilt by SQLAlchemy's renderer,
because that renderer would change what libpq reads: it writes a space in a
query value as `+` (libpq keeps `+` literally, so `options=-c x` would become
`-c+x`) and it cannot read libpq's multi-host form (`h1:5432,h2:5433`). The libpq
spellings therefore swap only the text that changes and leave the rest as given.
"""

from __future__ import annotations

from psycopg import conninfo
from sqlalchemy.engine import make_url

_LIBPQ_SCHEME = "postgresql"
_SQLALCHEMY_DRIVER = "postgresql+psycopg"


def libpq_url(url: str) -> str:
    """The URL as psycopg (libpq) wants it, whatever driver suffix it came with.

    libpq accepts only `postgresql://` and `postgres://`; everything after the
    scheme is kept byte for byte (see the module note for why no renderer is used).
    """
    _scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("expected a URL like postgresql://user@host:5432/database")
    return f"{_LIBPQ_SCHEME}://{rest}"


def sqlalchemy_url(url: str) -> str:
    """The URL with the psycopg 3 driver named, so SQLAlchemy never falls back to psycopg2.

    SQLAlchemy parses the result again with the parser that wrote it, so nothing is lost.
    """
    return make_url(url).set(drivername=_SQLALCHEMY_DRIVER).render_as_string(hide_password=False)


def with_database(url: str, database: str) -> str:
    """The same server and credentials, another database (the URL path; the query is kept as given)."""
    head, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("expected a URL like postgresql://user@host:5432/database")
    before_query, question_mark, query = rest.partition("?")
    authority = before_query.partition("/")[0]
    return f"{head}://{authority}/{database}{question_mark}{query}"


def database_name(url: str) -> str:
    """The database libpq connects to: the URL path, or `dbname=` in the query, decoded ('' when neither)."""
    return str(conninfo.conninfo_to_dict(libpq_url(url)).get("dbname") or "")
