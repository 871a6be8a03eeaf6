"""What every response gets and every request must pass: security headers, the token, the Host check.

- Content-Security-Policy allows this server's own script and style sheet and nothing else: no
  inline script, no inline style, no plugin, no frame, no form posting elsewhere.
- Bound to a loopback address, the UI answers only requests whose Host is a loopback name, so a
  web page that rebinds its DNS name to 127.0.0.1 cannot read the trail through a browser.
- With a token (required off loopback), every request carries it: an `Authorization: Bearer`
  header, or the cookie a first visit with `?token=` sets (HttpOnly, SameSite=Strict) before it
  is redirected to the same page without the token in its URL. Compared in constant time.
- A POST (the only one starts a verify) must come from this origin.
"""

from __future__ import annotations

import hmac
import ipaddress
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_COOKIE = "jarvis_ui_token"  # noqa: S105 (the name of a cookie, not a secret)
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`: addresses only this machine can reach."""
    name = host.strip("[]")
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Guard:
    """ASGI middleware in front of the whole UI (pages, static files, the event stream)."""

    def __init__(self, app: ASGIApp, *, token: str | None, loopback_only: bool) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        if self.loopback_only and not is_loopback(_hostname(headers.get("host", ""))):
            await _plain(send, 421, "this UI answers only to localhost / 127.0.0.1 (see `jarvis ui --help`)")
            return
        if self.token is not None:
            given_in_url = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))).get("token")
            if given_in_url is not None and self._matches(given_in_url):
                await _set_cookie_and_redirect(scope, send, given_in_url)
                return
            if not self._authorised(headers):
                await _plain(send, 401, "a token is required: open the URL `jarvis ui` printed (?token=...)")
                return
        if scope["method"] == "POST" and not _same_origin(headers):
            await _plain(send, 403, "cross-origin POST refused")
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)

    def _matches(self, candidate: str) -> bool:
        assert self.token is not None
        return hmac.compare_digest(candidate.encode(), self.token)

    def _authorised(self, headers: dict[str, str]) -> bool:
        bearer = headers.get("authorization", "")
        if bearer.lower().startswith("bearer ") and self._matches(bearer[7:].strip()):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header carries no token
            return False
        morsel = cookie.get(TOKEN_COOKIE)
        return morsel is not None and self._matches(morsel.value)


def _hostname(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _same_origin(headers: dict[str, str]) -> bool:
    """A browser says where a POST came from: Sec-Fetch-Site (modern browsers), else Origin.

    With `Referrer-Policy: no-referrer` a browser's own same-origin form sends `Origin: null`,
    so Sec-Fetch-Site decides when present; a request with neither header is no browser's.
    """
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None:
        return True
    return origin != "null" and origin.split("://", 1)[-1] == headers.get("host", "")


async def _plain(send: Send, status: int, text: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), *SECURITY_HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})


async def _set_cookie_and_redirect(scope: Scope, send: Send, token: str) -> None:
    """Keep the token in a cookie and drop it from the address bar (and from history and referrers)."""
    rest = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1")) if k != "token"]
    path = "/" + str(scope["path"]).lstrip("/")  # never `//host`: a redirect stays on this server
    location = path + (f"?{urlencode(rest)}" if rest else "")
    cookie = f"{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [
                (b"location", location.encode("latin-1")),
                (b"set-cookie", cookie.encode("latin-1")),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})
