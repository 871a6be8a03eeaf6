"""`jarvis mcp proxy -- CMD [ARGS…]`: an audit proxy for any MCP server, between an agent and its tools.

The proxy starts the upstream MCP server `CMD` over stdio and relays every message between it and
the client (on the proxy's own stdin/stdout). Each `tools/call` request gets its start row (tool
name, arguments) committed BEFORE it is forwarded; the upstream's answer gets the completion row
(`succeeded` with the result, `failed` with an `isError` result or a JSON-RPC error, with the
duration) before it is passed back. All of one client session is one planning cycle, whose goals
name the client (`clientInfo` of `initialize`, or of the request's `_meta` on 2026-07-28+), the
upstream command and the proxy's pid.

Why a raw JSON-RPC relay and not the SDK's low-level `Server` + `ClientSession`: an SDK pair
would terminate the protocol on both sides and re-create it, so the client would see the
proxy's own `serverInfo`, capabilities derived from the handlers the proxy happens to register,
the SDK's protocol-version negotiation (both the handshake and the 2026-07-28 per-request era)
instead of the upstream's, and any method, notification or server-to-client request the proxy
did not re-implement would be lost. Relaying every message keeps the protocol exactly the
upstream's; the proxy only parses lines to find `initialize`, `tools/call` and their responses.
What reaches the upstream is the proxy's own encoding of the message it parsed (and recorded), never
the client's raw bytes: a line the proxy cannot read as exactly one JSON object (invalid UTF-8, not
JSON, NaN, a duplicate key, a lone surrogate, nested deeper than MAX_NESTING) is answered with a
JSON-RPC error and not forwarded, because a lenient upstream (the Python SDK decodes with
errors="replace") might still run it; so is one with a key that differs from a JSON-RPC or
`tools/call` key only by case (Go decoders match keys case-insensitively), and a `tools/call` whose
id is not a string or an integer (an upstream answering id 7 to 7.0 would slip past the record).
Messages it makes itself are JSON-RPC error responses to a line or a `tools/call` it refused or
gave up on, and a `notifications/cancelled` to the upstream for a call that timed out. A line from the
upstream that is not JSON is dropped (logged on stderr); batches (JSON arrays, not MCP since
2025-06-18) are refused, and a `tools/call` without an id (a notification) is dropped, so no
`tools/call` can slip through unrecorded.

The other way, the client gets only what the proxy read, re-encoded: an upstream line that is not one
strict JSON object (a duplicate key, a key that differs from a JSON-RPC key only by case, a batch) is
dropped, and an answer is relayed only if its id is exactly (type and value) that of a forwarded
request still waiting for one, once. SDK clients match ids loosely (`id_aliases`: the Python SDK
reads "2" or "02" as 2, the TypeScript SDK "2.0" or "0x2" too), so an answer with a respelled,
unknown or settled id could otherwise settle a call in the client that the trail records
otherwise; for the same reason a request whose id a client could confuse with a running request's
or a given-up call's is refused. A `tools/call`'s answer is relayed as exactly the recorded result
or error.

When the trail and the relay disagree, the trail wins: a call whose start row cannot be committed
(an argument over JARVIS_MAX_VALUE_BYTES, PostgreSQL down) is not forwarded; an answer that cannot
be recorded (over the cap) is not passed on, and the call is recorded `failed` with the reason.
No answer within the call timeout (`--call-timeout`, JARVIS_MCP_CALL_TIMEOUT) -> `failed`; the
upstream exits mid-call -> `abandoned`; both with the reason, and a JSON-RPC error to the client.
The client cancels the call (`notifications/cancelled`): the notification is forwarded and the
call stays pending for CANCEL_GRACE seconds; an answer in that time is recorded as the outcome
(noting the cancel request) and relayed, else the call is recorded `cancelled`. An answer to a
call the proxy already settled without it (timed out, cancelled) is dropped, never relayed, and
its id cannot be reused in the session: the client never gets an answer the trail does not hold.
A proxy killed with -9 leaves its start rows; the next proxy or server closes them as `abandoned`
(sessions.py).

The database is reached through the synchronous library API in worker threads
(`anyio.to_thread.run_sync`): the event loop that relays messages is never blocked on PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
from anyio.streams.buffered import BufferedByteReceiveStream

from jarvis.agent.runtime import Agent
from jarvis.config import ExitCode, JarvisError, redact
from jarvis.db.audit import ToolCallStart
from jarvis.db.audit.tool_calls import MAX_ERROR_LENGTH, describe_error
from jarvis.db.base import CompletionStatus
from jarvis.db.jsonb import InvalidJsonError, max_value_bytes
from jarvis.mcp.sessions import SessionCycle

log = logging.getLogger("jarvis.mcp.proxy")

CLIENT_INFO_META_KEY = "io.modelcontextprotocol/clientInfo"
"""Where a 2026-07-28 client names itself on every request (there is no `initialize` in that era)."""
INTERNAL_ERROR = -32603
INVALID_REQUEST = -32600
PARSE_ERROR = -32700
CANCEL_GRACE = 5.0
"""Seconds a call the client cancelled waits for the upstream's answer before it is recorded `cancelled`."""
MAX_NESTING = 64
"""The deepest nesting of arrays and objects a client message may have (parsers differ on deeper ones)."""
MESSAGE_KEYS = frozenset({"jsonrpc", "method", "id", "params"})
PARAMS_KEYS = frozenset({"name", "arguments", "_meta"})
UPSTREAM_KEYS = frozenset({"jsonrpc", "method", "id", "params", "result", "error"})
SHUTDOWN_GRACE = 5.0
"""Seconds the upstream gets to exit after its stdin is closed, and again after SIGTERM, before SIGKILL."""
MIN_LINE_BYTES = 64 * 1024 * 1024
"""The longest line read from either side: at least 4 x JARVIS_MAX_VALUE_BYTES, more than could be recorded."""
NO_TOOL_NAME = "(no tool name)"


class UpstreamStartError(JarvisError):
    """The upstream MCP server could not be started (no such command, not executable)."""

    exit_code = ExitCode.BAD_INPUT


def shown_command(command: list[str]) -> str:
    """The upstream command as recorded and shown: passwords in URLs masked (pass other secrets in the environment,
    which is never recorded)."""
    return redact(shlex.join(command))


def upstream_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment the upstream runs with: the one the proxy was started with, minus what a PEX added.

    A PEX in venv mode (`jarvis.pex`, and the image's `jarvis`, a PEX unpacked into a venv) sets VIRTUAL_ENV to its
    own venv and puts that venv's bin/ first on PATH before Jarvis runs, so a bare `python -m mcp_server_time` in an
    MCP client's configuration would start the PEX's interpreter, which has none of the user's packages. Such a venv
    is recognised by the PEX-INFO file at its root; its bin/ is taken off PATH and VIRTUAL_ENV and the PEX variables
    are dropped, so the upstream command is found, and runs, as if the client had started it itself. Any other
    environment (the wheel's console script in the user's own venv) is passed on unchanged.
    """
    env = dict(environ)
    venv = env.get("VIRTUAL_ENV", "")
    if not venv or not os.path.isfile(os.path.join(venv, "PEX-INFO")):
        return env
    own_bin = os.path.realpath(os.path.join(venv, "bin"))
    path = [entry for entry in env.get("PATH", "").split(os.pathsep) if os.path.realpath(entry) != own_bin]
    env["PATH"] = os.pathsep.join(path)
    for name in list(env):
        if name in ("VIRTUAL_ENV", "PEX") or name.startswith(("PEX_", "_PEX_", "__PEX_")):
            del env[name]
    return env


def one_line(text: str) -> str:
    """`text` on one line, at most MAX_ERROR_LENGTH characters: what an error column and a client are given."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


def request_key(request_id: Any) -> str:
    """A request id as a dict key: 1 and "1" are different ids in JSON-RPC (and only an identical id matches)."""
    return json.dumps(request_id, sort_keys=True)


def is_request_id(value: Any) -> bool:
    """Whether `value` may be a request id the proxy forwards: a string or an integer (MCP), never a bool."""
    return isinstance(value, int | str) and not isinstance(value, bool)


JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
"""What JavaScript's `Number()` trims from a string (WhiteSpace and LineTerminator)."""
JS_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)", re.ASCII)
JS_RADIX = {"x": (16, re.compile(r"[0-9a-fA-F]+")), "o": (8, re.compile(r"[0-7]+")), "b": (2, re.compile(r"[01]+"))}


def as_double(number: int) -> float:
    """`number` as a JavaScript number: the nearest double (past 2**53 neighbours merge), or an infinity."""
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def js_number(text: str) -> float | None:
    """JavaScript's `Number(text)` (StringToNumber), or None for NaN: what the TypeScript SDK matches an id by."""
    text = text.strip(JS_WHITESPACE)
    if not text:
        return 0.0  # Number("") and Number(" ") are 0
    if JS_DECIMAL.fullmatch(text):
        return float(text)  # the regex admits only what JavaScript reads; Python reads it the same way
    if len(text) > 2 and text[0] == "0" and text[1].lower() in JS_RADIX:
        base, digits = JS_RADIX[text[1].lower()]
        if digits.fullmatch(text[2:]):
            return as_double(int(text[2:], base))
    return None


def id_aliases(request_id: int | str) -> frozenset[Any]:
    """Every value an MCP SDK client may take `request_id` for when it matches a response to its request.

    The Python SDK matches `coerce_request_id(id)`: a string `int()` reads is that integer ("01",
    " 1", "+1", "1_0", "\u0661"); the TypeScript SDK matches `Number(id)`: "1.0", "1e0", "0x1",
    "" (0), and integers past 2**53 round to the same double. Two ids a client may confuse share
    an alias; strings and numbers never compare equal, so a string stands for itself.
    """
    if isinstance(request_id, int):
        return frozenset({request_id, as_double(request_id)})
    aliases: set[Any] = {request_id}
    try:
        python_sdk = int(request_id)
    except ValueError:
        pass
    else:
        aliases |= {python_sdk, as_double(python_sdk)}
    typescript_sdk = js_number(request_id)
    if typescript_sdk is not None:
        aliases.add(typescript_sdk)
    return frozenset(aliases)


def error_response(request_id: Any, message: str, code: int = INTERNAL_ERROR) -> bytes:
    return encode({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}})


def encode(message: Any) -> bytes:
    """`message` as one line of strict JSON; ValueError for NaN/infinity, UnicodeEncodeError for a lone surrogate."""
    return json.dumps(message, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8") + b"\n"


class UnreadableMessage(Exception):
    """A client line the proxy will not forward; `code` is the JSON-RPC error code it is answered with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a duplicate key in one object: {sorted({key for key in keys if keys.count(key) > 1})}")
    return dict(pairs)


def no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def nesting(value: Any) -> int:
    """How deeply arrays and objects nest in `value` (iteratively, so a deep value cannot exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if deepest > MAX_NESTING:
                break
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def case_variants(message: dict[str, Any], keys: frozenset[str]) -> list[str]:
    """The keys of `message` that are not in `keys` but match one of them if case is ignored."""
    return [key for key in message if key not in keys and key.casefold() in keys]


def client_message(line: bytes) -> tuple[dict[str, Any], bytes]:
    """The one JSON-RPC message on a client line, and the bytes to forward for it (its re-encoding).

    UnreadableMessage if the line must not be forwarded: anything a lenient upstream could read
    differently from the proxy.
    """
    try:
        message = json.loads(line.decode("utf-8"), object_pairs_hook=unique_keys, parse_constant=no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as unreadable:
        reason = "nested too deeply" if isinstance(unreadable, RecursionError) else str(unreadable)
        raise UnreadableMessage(PARSE_ERROR, one_line(f"the line is not one strict JSON message ({reason})")) from None
    if isinstance(message, list):
        raise UnreadableMessage(INVALID_REQUEST, "JSON-RPC batches are not part of MCP; send one message a line")
    if not isinstance(message, dict):
        raise UnreadableMessage(INVALID_REQUEST, "a JSON-RPC message is a JSON object")
    if nesting(message) > MAX_NESTING:
        raise UnreadableMessage(INVALID_REQUEST, f"the message nests arrays and objects deeper than {MAX_NESTING}")
    params = message.get("params")
    variants = case_variants(message, MESSAGE_KEYS)
    variants += case_variants(params, PARAMS_KEYS) if isinstance(params, dict) else []
    if variants:
        raise UnreadableMessage(
            INVALID_REQUEST, one_line(f"keys that differ from JSON-RPC/MCP keys only by case: {variants}")
        )
    try:
        return message, encode(message)
    except (ValueError, UnicodeEncodeError) as unencodable:  # 1e999 (infinity), a lone surrogate
        raise UnreadableMessage(
            PARSE_ERROR, one_line(f"the message cannot be relayed as JSON ({unencodable})")
        ) from None


def upstream_message(line: bytes) -> tuple[dict[str, Any], bytes]:
    """The one JSON-RPC message on an upstream line, and the bytes the client is sent for it (its re-encoding).

    UnreadableMessage if it is dropped: anything a client could read differently from the proxy (not
    strict UTF-8 JSON, a duplicate key, NaN, a key that differs from a JSON-RPC key only by case, a
    batch), so what the client acts on is always what the proxy read, and recorded.
    """
    try:
        message = json.loads(line.decode("utf-8"), object_pairs_hook=unique_keys, parse_constant=no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as unreadable:
        reason = "nested too deeply" if isinstance(unreadable, RecursionError) else str(unreadable)
        raise UnreadableMessage(PARSE_ERROR, one_line(f"not one strict JSON message ({reason})")) from None
    if not isinstance(message, dict):
        raise UnreadableMessage(INVALID_REQUEST, "not a JSON object (batches are not part of MCP)")
    variants = case_variants(message, UPSTREAM_KEYS)
    if variants:
        raise UnreadableMessage(
            INVALID_REQUEST, one_line(f"keys that differ from JSON-RPC keys only by case: {variants}")
        )
    try:
        return message, encode(message)
    except (ValueError, UnicodeEncodeError) as unencodable:  # 1e999 (infinity), a lone surrogate
        raise UnreadableMessage(PARSE_ERROR, one_line(f"cannot be relayed as JSON ({unencodable})")) from None


def outcome(response: dict[str, Any]) -> tuple[CompletionStatus, Any, str | None]:
    """The completion a `tools/call` response is recorded as: status, output, error."""
    if "error" in response:
        error = response["error"]
        if isinstance(error, dict):
            return "failed", error, one_line(f"JSON-RPC error {error.get('code')}: {error.get('message')}")
        return "failed", error, one_line(f"JSON-RPC error: {error!r}")
    result = response["result"]
    if isinstance(result, dict) and result.get("isError") is True:
        texts = [
            str(block["text"])
            for block in result.get("content") or []
            if isinstance(block, dict) and isinstance(block.get("text"), str)
        ]
        return "failed", result, one_line("; ".join(texts) or "the tool reported an error (isError) without text")
    return "succeeded", result, None


@dataclass
class PendingCall:
    """A forwarded `tools/call` whose answer has not come back; `timer` ends its wait for one."""

    request_id: Any
    start: ToolCallStart
    timer: anyio.CancelScope
    cancel_reason: str | None = None
    """Set when the client asked to cancel: why, as recorded if no answer comes within CANCEL_GRACE."""

    @property
    def what(self) -> str:
        return f"tools/call {self.start.tool_name!r}"


class Proxy:
    """One proxy process: one client (on fds 0 and 1), one upstream, one session cycle."""

    def __init__(self, agent: Agent, command: list[str], *, call_timeout: float) -> None:
        self.agent = agent
        self.command = command
        self.shown_command = shown_command(command)
        self.call_timeout = call_timeout
        self.session = SessionCycle(agent, 1, {"mcp": "proxy", "upstream": [redact(part) for part in command]})
        self.pending: dict[str, PendingCall] = {}
        self.outstanding: dict[str, frozenset[Any]] = {}
        """Every forwarded client request still waiting for its answer (`tools/call` or not), and its id's aliases."""
        self.given_up: dict[str, frozenset[Any]] = {}
        """Calls settled without the upstream's answer, and their ids' aliases: a late answer is dropped, and no
        id a client could take for theirs is used again in the session."""
        self.client_closed = False
        self.write_lock = anyio.Lock()
        self.upstream_lock = anyio.Lock()
        self.upstream: anyio.abc.ByteSendStream | None = None
        self.upstream_done = anyio.Event()
        self.tasks: anyio.abc.TaskGroup | None = None
        self.exit_code = 0
        self.ended = "the client closed the connection"
        self.line_limit = max(MIN_LINE_BYTES, 4 * max_value_bytes())

    async def run(self) -> int:
        """Relay until the client closes the connection (0) or the upstream exits on its own (1)."""
        try:
            process = await anyio.open_process(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None,
                env=upstream_environment(os.environ),
            )
        except OSError as error:
            raise UpstreamStartError(
                f"cannot start the upstream MCP server `{self.shown_command}`: {error.strerror or error}. "
                "Fix: check the command after `--` (it runs with the PATH and environment the proxy was started "
                "with; an absolute path to the command always works)"
            ) from None
        self.upstream = process.stdin
        try:
            async with anyio.create_task_group() as tasks:
                self.tasks = tasks
                tasks.start_soon(self.from_upstream, process)
                await self.from_client(process)
        finally:
            await self.stop(process)
            await anyio.to_thread.run_sync(self.session.close, self.ended)
        return self.exit_code

    # -- client -> upstream ------------------------------------------------------------------------

    async def from_client(self, process: anyio.abc.Process) -> None:
        assert process.stdin is not None and self.tasks is not None
        buffer = b""
        while True:
            await anyio.wait_readable(0)
            chunk = os.read(0, 1 << 16)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                await self.client_line(line + b"\n")
            if len(buffer) > self.line_limit:
                log.error("the client sent a line longer than %d bytes: closing the connection", self.line_limit)
                buffer = b""
                break
        if buffer.strip():
            await self.client_line(buffer + b"\n")
        self.client_closed = True
        await process.stdin.aclose()  # a well-behaved server exits when its stdin closes
        with anyio.move_on_after(SHUTDOWN_GRACE):
            await self.upstream_done.wait()
        self.tasks.cancel_scope.cancel()

    async def client_line(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            message, forwarded = client_message(line)
        except UnreadableMessage as refused:
            log.warning("a client line was not forwarded: %s", refused)
            await self.to_client(error_response(None, f"jarvis mcp proxy: {refused}", refused.code))
            return
        self.note_client(message)
        if message.get("method") == "tools/call" and "id" not in message:
            # A request without an id is a notification: nobody could be told its outcome, and a lax
            # upstream that ran it anyway would run a tool unrecorded.
            log.warning("a tools/call without an id (a notification) was dropped, not forwarded")
            return
        if message.get("method") == "notifications/cancelled":
            self.cancelled_by_client(message)
        is_request = "method" in message and "id" in message
        refusal = self.refused_id(message["id"]) if is_request else None
        if refusal is None and message.get("method") == "tools/call":
            refusal = await self.begin_call(message)
        if refusal is not None:
            await self.to_client(refusal)
            return
        if is_request:
            self.outstanding[request_key(message["id"])] = id_aliases(message["id"])
        await self.to_upstream(forwarded)

    def refused_id(self, request_id: Any) -> bytes | None:
        """The error response for a request whose id must not be forwarded, or None.

        Only an answer with exactly a forwarded id is relayed (see `answer`), so an id must not be one
        an MCP client could take for another request still waiting for its answer, or for a call the
        proxy gave up on (whose answer may still come): that answer would settle both in the client.
        """
        if not is_request_id(request_id):
            return error_response(
                None, "jarvis mcp proxy: a request id must be a string or an integer (MCP)", INVALID_REQUEST
            )
        key, aliases = request_key(request_id), id_aliases(request_id)
        for other, other_aliases in self.outstanding.items():
            if aliases & other_aliases:
                running = "is" if other == key else f"could be taken for {other}, which is"
                return error_response(
                    request_id,
                    f"jarvis mcp proxy: request id {key} {running} already in use by a running request; use a new id",
                    INVALID_REQUEST,
                )
        for other, other_aliases in self.given_up.items():
            if aliases & other_aliases:
                same = "belongs" if other == key else f"could be taken for {other}, which belongs"
                return error_response(
                    request_id,
                    f"jarvis mcp proxy: request id {key} {same} to a call given up on, whose answer may still come; "
                    "use a new id",
                    INVALID_REQUEST,
                )
        return None

    def note_client(self, message: dict[str, Any]) -> None:
        """Remember who the client is: `clientInfo` of `initialize`, or of a 2026-07-28 request's `_meta`."""
        params = message.get("params")
        if not isinstance(params, dict):
            return
        meta = params.get("_meta")
        info = params.get("clientInfo") if message.get("method") == "initialize" else None
        if info is None and isinstance(meta, dict):
            info = meta.get(CLIENT_INFO_META_KEY)
        if isinstance(info, dict):
            name, version = info.get("name"), info.get("version")
            self.session.set_client(
                name if isinstance(name, str) else None, version if isinstance(version, str) else None
            )

    async def begin_call(self, message: dict[str, Any]) -> bytes | None:
        """Commit the call's start row and arm its timeout; or the error response if it must not be forwarded."""
        request_id = message["id"]
        key = request_key(request_id)
        raw_params = message.get("params")
        params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
        name = params.get("name")
        tool_name = name[:200] if isinstance(name, str) and name else NO_TOOL_NAME
        arguments = params.get("arguments")

        def start() -> ToolCallStart:
            return self.agent.tool_calls.start(tool_name, arguments, cycle_id=self.session.cycle_id())

        try:
            started = await anyio.to_thread.run_sync(start)
        except Exception as error:  # nothing may reach the upstream unrecorded
            reason = error if isinstance(error, JarvisError) else describe_error(error)
            log.error("tools/call %r not forwarded: the audit trail refused its start row: %s", tool_name, reason)
            return error_response(
                request_id,
                one_line(
                    f"jarvis mcp proxy did not forward tools/call {tool_name!r}: the audit trail refused it: {reason}"
                ),
            )
        call = PendingCall(request_id, started, anyio.CancelScope())
        self.pending[key] = call
        assert self.tasks is not None
        self.tasks.start_soon(self.expire, key, call, self.call_timeout)
        return None

    def cancelled_by_client(self, message: dict[str, Any]) -> None:
        """The client gave up on a call: it waits CANCEL_GRACE more seconds for the upstream's answer.

        The notification itself is forwarded, so the upstream can stop the work. The upstream may have
        run the tool already (or run it anyway): its answer, if one comes, is the outcome recorded, so
        the trail never says `cancelled` for a call whose result was relayed.
        """
        params = message.get("params")
        if not isinstance(params, dict) or "requestId" not in params:
            return
        key = request_key(params["requestId"])
        call = self.pending.get(key)
        if call is None or call.cancel_reason is not None:
            return
        reason = params.get("reason")
        because = f": {reason}" if isinstance(reason, str) and reason else ""
        call.cancel_reason = one_line(f"the client cancelled {call.what}{because}")
        call.timer.cancel()
        call.timer = anyio.CancelScope()
        assert self.tasks is not None
        self.tasks.start_soon(self.expire, key, call, min(CANCEL_GRACE, self.call_timeout))

    async def expire(self, key: str, call: PendingCall, seconds: float) -> None:
        with call.timer:
            await anyio.sleep(seconds)
            if self.pending.get(key) is not call:
                return
            del self.pending[key]
            self.settled_without_answer(key)
            if call.cancel_reason is not None:  # the client is not waiting, and the upstream was told
                await self.settle(call, "cancelled", f"{call.cancel_reason} (no answer came within {seconds:g} s)")
                return
            reason = (
                f"no answer from the upstream MCP server within {self.call_timeout:g} s "
                f"(JARVIS_MCP_CALL_TIMEOUT or --call-timeout); the proxy gave up on {call.what}"
            )
            await self.settle(call, "failed", reason)
            await self.to_client(error_response(call.request_id, f"jarvis mcp proxy: {reason}"))
            cancel = {"requestId": call.request_id, "reason": reason}
            await self.to_upstream(encode({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": cancel}))

    # -- upstream -> client ------------------------------------------------------------------------

    async def from_upstream(self, process: anyio.abc.Process) -> None:
        assert process.stdout is not None
        lines = BufferedByteReceiveStream(process.stdout)
        limit = self.line_limit
        try:
            while True:
                try:
                    line = await lines.receive_until(b"\n", limit) + b"\n"
                except (anyio.EndOfStream, anyio.IncompleteRead, anyio.ClosedResourceError):
                    break
                except anyio.DelimiterNotFound:
                    log.error("the upstream wrote a line longer than %d bytes: stopping it", limit)
                    break
                await self.upstream_line(line)
        finally:
            with anyio.CancelScope(shield=True):
                await self.upstream_ended(process)

    async def upstream_line(self, line: bytes) -> None:
        try:
            message, encoded = upstream_message(line)
        except UnreadableMessage as unreadable:
            log.warning("an upstream line was dropped, not relayed: %s: %r", unreadable, line[:200])
            return
        if isinstance(message.get("method"), str) and "result" not in message and "error" not in message:
            await self.to_client(encoded)  # a request or a notification of the upstream's own
            return
        answer = await self.answer(message, encoded)
        if answer is not None:
            await self.to_client(answer)

    async def answer(self, response: dict[str, Any], encoded: bytes) -> bytes | None:
        """What the client is sent for an upstream message that answers a request, or None if it is dropped.

        Only an answer whose id is exactly (type and value) that of a forwarded request still waiting
        is relayed, once: an SDK client matches "2", "02" or 2.0 to its request 2 (see `id_aliases`),
        so an answer with a respelled id, an unknown one, or one to a request already answered or
        given up on could settle a call in the client that the trail records otherwise.
        """
        request_id = response.get("id")
        key = request_key(request_id) if is_request_id(request_id) else None
        if key is None or key not in self.outstanding:
            seen = "given up on" if key in self.given_up else "never forwarded or already answered"
            log.warning(
                "an upstream answer with id %s was dropped, not relayed: no forwarded request with exactly that id "
                "is waiting (%s)",
                one_line(json.dumps(request_id) if "id" in response else "(none)"),
                seen,
            )
            return None
        del self.outstanding[key]
        call = self.pending.pop(key, None)
        if call is None:
            return encoded  # not a tools/call: relayed, not recorded
        call.timer.cancel()
        return await self.finish(call, response)

    def settled_without_answer(self, key: str) -> None:
        """The call `key` is settled but the upstream may still answer it: its answer and its id are retired."""
        aliases = self.outstanding.pop(key, None)
        self.given_up[key] = aliases if aliases is not None else frozenset()

    async def finish(self, call: PendingCall, response: dict[str, Any]) -> bytes:
        """Record the answer to `call`; what the client is sent: exactly what was recorded, or an error if it was not.

        The client gets the recorded value under the key it was recorded from (`error` wins over
        `result`, as the trail's `failed` says): an answer with both would read as a success to a
        client that checks `result` first.
        """
        if "result" not in response and "error" not in response:
            reason = f"the upstream sent an invalid JSON-RPC response to {call.what} (neither result nor error)"
            await self.settle(call, "failed", reason)
            return error_response(call.request_id, f"jarvis mcp proxy: {reason}")
        status, output, error = outcome(response)
        relayed = encode(
            {"jsonrpc": "2.0", "id": call.request_id, "error" if "error" in response else "result": output}
        )
        if call.cancel_reason is not None:
            error = one_line(
                f"{error}; {call.cancel_reason}, but the upstream answered"
                if error
                else f"{call.cancel_reason}, but the upstream answered"
            )
        try:
            await self.record(call, status, output=output, error=error)
        except InvalidJsonError as refused:  # over JARVIS_MAX_VALUE_BYTES, or a NUL PostgreSQL cannot store
            reason = one_line(f"the upstream's answer to {call.what} was not passed on: {refused}")
            await self.settle(call, "failed", reason)
            return error_response(call.request_id, f"jarvis mcp proxy: {reason}")
        except Exception as unrecorded:
            reason = one_line(
                f"the answer to {call.what} could not be recorded in the audit trail, so it was not passed on: "
                f"{describe_error(unrecorded)}"
            )
            log.error("%s", reason)
            return error_response(call.request_id, f"jarvis mcp proxy: {reason}")
        return relayed

    async def upstream_ended(self, process: anyio.abc.Process) -> None:
        """The upstream's stdout closed: every call still waiting is abandoned; a client still there is told."""
        with anyio.move_on_after(SHUTDOWN_GRACE):
            await process.wait()
        code = process.returncode
        if self.client_closed:
            reason = "the client closed the connection before the upstream answered"
        else:
            reason = f"the upstream MCP server `{self.shown_command}` exited (code {code}) before answering"
            self.ended = f"the upstream MCP server exited (code {code})"
            self.exit_code = 1
            log.error("%s", self.ended)
        for key, call in list(self.pending.items()):
            del self.pending[key]
            self.settled_without_answer(key)
            call.timer.cancel()
            if call.cancel_reason is not None:  # no answer came: the cancel is what happened
                await self.settle(call, "cancelled", f"{call.cancel_reason} ({reason})")
                continue
            await self.settle(call, "abandoned", f"{reason} ({call.what})")
            if not self.client_closed:
                await self.to_client(error_response(call.request_id, f"jarvis mcp proxy: {reason} {call.what}"))
        self.upstream_done.set()
        if self.tasks is not None:
            self.tasks.cancel_scope.cancel()  # nothing more can be relayed: stop reading the client

    # -- shared ------------------------------------------------------------------------------------

    async def record(
        self, call: PendingCall, status: CompletionStatus, *, output: Any = None, error: str | None = None
    ) -> None:
        # The duration is measured from the start row's commit; an abandoned call has none.
        await anyio.to_thread.run_sync(
            lambda: self.agent.tool_calls.record_completion(call.start, status, output=output, error=error)
        )
        self.session.count(status == "succeeded")

    async def settle(self, call: PendingCall, status: CompletionStatus, reason: str) -> None:
        """Record an outcome the proxy decided (timeout, cancel, upstream gone); if the trail cannot take it
        (PostgreSQL down), say so and carry on: the start row stays open, and the next `jarvis mcp` process
        closes it as abandoned.
        """
        try:
            await self.record(call, status, error=reason)
        except Exception as unrecorded:
            log.error("could not record the outcome of %s (%s): %s", call.what, status, describe_error(unrecorded))

    async def to_client(self, data: bytes) -> None:
        """Write to the client; a client that has gone away is not an error (everything is recorded already)."""
        async with self.write_lock:
            try:
                await anyio.to_thread.run_sync(write_all, 1, data)
            except OSError as gone:  # EPIPE: the client closed its end
                if not self.client_closed:
                    log.warning("the client stopped reading: %s", gone)
                self.client_closed = True

    async def to_upstream(self, data: bytes) -> None:
        assert self.upstream is not None
        async with self.upstream_lock:
            try:
                await self.upstream.send(data)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # the upstream is gone (its calls are settled when its stdout closes)

    async def stop(self, process: anyio.abc.Process) -> None:
        """Make sure the upstream is gone: close its stdin, then SIGTERM, then SIGKILL."""
        with anyio.CancelScope(shield=True):
            if process.stdin is not None:
                await process.stdin.aclose()
            if process.returncode is None:
                with anyio.move_on_after(SHUTDOWN_GRACE):
                    await process.wait()
            if process.returncode is None:
                process.terminate()
                with anyio.move_on_after(SHUTDOWN_GRACE):
                    await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
