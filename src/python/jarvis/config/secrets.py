"""Keeping passwords out of everything a person or a log can read."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_URL_IN_TEXT = re.compile(r"\b([a-z][a-z0-9+.-]*://)([^/@\s:]*):([^@\s]*)@", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***; anything unparsable is returned masked by regex."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}{port}"))
    except ValueError:
        return redact(url)


def redact(text: str) -> str:
    """Mask the password of every URL inside free text (error messages, log lines)."""
    return _URL_IN_TEXT.sub(lambda m: f"{m.group(1)}{m.group(2)}:{MASK}@", text)
