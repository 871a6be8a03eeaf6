"""Keeping passwords out of everything a person or a log can read.

URLs are masked with the parsers that read them for real: SQLAlchemy's URL
parser (`make_url(...).render_as_string(hide_password=True)`) and libpq's
conninfo parser (`psycopg.conninfo`), which is what decides the password a
PostgreSQL connection sends. A password hides in three places: the user-info
(`user:secret@`), a query parameter (`?password=secret`, `?sslpassword=...`)
and, when it holds a raw `@`, the host name: those parsers split user-info at
its first `@`, so `u:p@ss@host` reads as password `p` on host `ss@host`, and
the tail `ss` surfaces wherever the host name is printed.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from psycopg import conninfo
from sqlalchemy.engine import URL, make_url

MASK = "***"
_ENCODED_MASK = "%2A" * len(MASK)

# Free text (error messages, log lines) has no parser: these find what the URL parsers would.
_URL_USERINFO = re.compile(r"\b([a-z][a-z0-9+.-]*://)([^\s/@:'\"]*):([^\s/'\"]*)@", re.IGNORECASE)
"""scheme://user:password@ -- greedy up to the last `@` before the path, so a raw `@` in the password is covered."""
_SECRET_PARAMETER = re.compile(r"\b(\w*password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&'\",;)]+)", re.IGNORECASE)
"""password=... / sslpassword=... in a URL query or a libpq conninfo string."""
_QUOTED_AT = re.compile(r"([\"'])(?![^\"'\s]*://)[^\"'\s]*@([^\"'\s@]*)\1")
"""A quoted host name holding an `@` ('ss@host'): the tail of a password with a raw `@`, as libpq misread it."""


def mask_url(url: str) -> str:
    """The URL with every password in it replaced by ***; a URL that both parsers read back, without it.

    A URL with nothing to hide is returned exactly as given. Text no URL parser accepts
    (a multi-host libpq URL, say) is masked by `redact`, and checked the same way.
    """
    try:
        parsed = make_url(url)
    except Exception:  # ArgumentError, or ValueError for a port SQLAlchemy cannot read
        masked = redact(url)
    else:
        secret_keys = [key for key in parsed.query if _is_secret(key)]
        host = parsed.host or ""
        nothing_to_hide = parsed.password is None and not secret_keys and "@" not in host
        masked = url if nothing_to_hide else _render_masked(parsed, secret_keys)
    return masked if _hides_every_password(masked) else _fully_masked(url)


def redact(text: str) -> str:
    """Mask every password inside free text (error messages, log lines): URL user-info, password=
    parameters, and quoted host names that swallowed the tail of a password holding a raw `@`."""
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:{MASK}@", text)
    text = _SECRET_PARAMETER.sub(lambda m: f"{m.group(1)}{MASK}", text)
    return _QUOTED_AT.sub(lambda m: f"{m.group(1)}{MASK}@{m.group(2)}{m.group(1)}", text)


def _is_secret(key: str) -> bool:
    return "password" in key.lower()  # password (libpq, Redis), sslpassword (libpq)


def _render_masked(parsed: URL, secret_keys: list[str]) -> str:
    host = parsed.host or ""
    if "@" in host:  # a raw '@' in the password: everything up to the last '@' is password
        parsed = parsed.set(host=host.rpartition("@")[2], password=MASK)
    if secret_keys:
        parsed = parsed.update_query_dict({key: MASK for key in secret_keys})
    # '*' needs no escaping in a query; show the mask as the mask
    return parsed.render_as_string(hide_password=True).replace(f"={_ENCODED_MASK}", f"={MASK}")


def _hides_every_password(masked: str) -> bool:
    """Read `masked` back with every parser involved: each must find no password, or the mask."""
    try:
        split = urlsplit(masked)
        if split.password not in (None, MASK):
            return False
    except ValueError:
        return False
    if any(_is_secret(key) and value != MASK for key, value in parse_qsl(split.query)):
        return False
    parsed: URL | None
    try:
        parsed = make_url(masked)
    except Exception:
        parsed = None  # only a libpq-only spelling (multi-host) gets here; libpq checks it below
    if parsed is not None:
        if parsed.password not in (None, MASK) or "@" in (parsed.host or ""):
            return False
        if any(_is_secret(key) and value not in (MASK, (MASK,)) for key, value in parsed.query.items()):
            return False
    if split.scheme.lower().startswith("postgres"):
        try:
            params = conninfo.conninfo_to_dict(split._replace(scheme="postgresql").geturl())
        except Exception:
            return parsed is not None
        if any(_is_secret(key) and value != MASK for key, value in params.items()):
            return False
    return True


def _fully_masked(url: str) -> str:
    """Nothing of a URL no parser reads safely, but its scheme; it still reads back as a masked password."""
    scheme = urlsplit(url).scheme if "://" in url else ""
    return f"{scheme}://{MASK}:{MASK}@{MASK}" if scheme else MASK
