"""A hostile upstream MCP server for the proxy's tests: raw JSON-RPC on stdin/stdout, no SDK.

Its tools misbehave on purpose: `huge` answers with SIZE bytes of text, `invalid` with a response
that has neither result nor error, `garbage` writes a line that is not JSON before a good answer,
`hang` never answers, `exit` exits (code 3) in the middle of the call, `fail` answers with an
isError result, `after_cancel` answers only once it is told the call was cancelled, `append`
appends the line it received to the file `path` of its arguments, `twice` answers twice: first with the
raw line `first` of its arguments (`%ID%` replaced by the request's id as JSON; by default the id respelled
as a string), then properly; `echo` behaves. It is lax too:
it runs a `tools/call` sent without an id, and decodes its input with errors="replace" (as the
Python SDK's stdio server does). It also lists a resource and a prompt, which the proxy must relay
unchanged.
"""

from __future__ import annotations

import json
import sys
from typing import Any

TOOLS = ["echo", "huge", "invalid", "garbage", "hang", "exit", "fail", "after_cancel", "append", "twice"]
FIRST_ANSWER = '{"jsonrpc": "2.0", "id": "%ID%", "result": {"content": [{"type": "text", "text": "the first answer"}]}}'
"""What `twice` sends first unless told otherwise: the id respelled as a string (2 -> "2")."""
waiting_for_cancel: set[str] = set()
"""The ids (as JSON) of `after_cancel` calls not yet cancelled."""


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def text_result(text: str, *, is_error: bool = False) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": is_error}


def call_tool(request_id: Any, name: str, arguments: dict[str, Any], line: str) -> None:
    if name == "echo":
        send({"jsonrpc": "2.0", "id": request_id, "result": text_result(json.dumps(arguments, sort_keys=True))})
    elif name == "huge":
        send({"jsonrpc": "2.0", "id": request_id, "result": text_result("x" * int(arguments["size"]))})
    elif name == "invalid":
        send({"jsonrpc": "2.0", "id": request_id})
    elif name == "garbage":
        sys.stdout.write("this line is not JSON-RPC {\n")
        send({"jsonrpc": "2.0", "id": request_id, "result": text_result("after the garbage")})
    elif name == "hang":
        pass  # never answers; keeps reading, and exits when its stdin closes
    elif name == "after_cancel":
        waiting_for_cancel.add(json.dumps(request_id))
    elif name == "append":
        with open(arguments["path"], "a", encoding="utf-8") as ran:
            ran.write(line)
        send({"jsonrpc": "2.0", "id": request_id, "result": text_result("appended")})
    elif name == "twice":
        sys.stdout.write(str(arguments.get("first", FIRST_ANSWER)).replace("%ID%", json.dumps(request_id)) + "\n")
        send({"jsonrpc": "2.0", "id": request_id, "result": text_result("the second answer")})
    elif name == "exit":
        sys.exit(3)
    elif name == "fail":
        send({"jsonrpc": "2.0", "id": request_id, "result": text_result("the tool failed on purpose", is_error=True)})
    else:
        send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32602, "message": f"unknown tool {name}"}})


def main() -> None:
    for raw in sys.stdin.buffer:
        line = raw.decode("utf-8", errors="replace")
        message = json.loads(line)
        method, request_id = message.get("method"), message.get("id")
        if method == "notifications/cancelled":
            cancelled = json.dumps(message["params"]["requestId"])
            if cancelled in waiting_for_cancel:  # it ran to the end anyway: the answer comes after the cancel
                waiting_for_cancel.discard(cancelled)
                answer = text_result("finished although cancelled")
                send({"jsonrpc": "2.0", "id": message["params"]["requestId"], "result": answer})
        if request_id is None:
            if method == "tools/call":  # a lax server: runs a "call" sent as a notification, and says so
                note = {"level": "warning", "data": "ran a tools/call that had no id"}
                send({"jsonrpc": "2.0", "method": "notifications/message", "params": note})
            continue  # other notifications
        if method == "initialize":
            result = {
                "protocolVersion": message["params"]["protocolVersion"],
                "capabilities": {"tools": {}, "resources": {}, "prompts": {}},
                "serverInfo": {"name": "hostile", "version": "1.0"},
            }
            send({"jsonrpc": "2.0", "id": request_id, "result": result})
        elif method == "tools/list":
            schema = {"type": "object", "additionalProperties": True}
            tools = [{"name": name, "description": f"misbehaves: {name}", "inputSchema": schema} for name in TOOLS]
            send({"jsonrpc": "2.0", "id": request_id, "result": {"tools": tools}})
        elif method == "tools/call":
            call_tool(request_id, message["params"]["name"], message["params"].get("arguments") or {}, line)
        elif method == "resources/list":
            resource = {"uri": "hostile://notes", "name": "notes", "mimeType": "text/plain"}
            send({"jsonrpc": "2.0", "id": request_id, "result": {"resources": [resource]}})
        elif method == "prompts/list":
            prompt = {"name": "greet", "description": "say hello", "arguments": [{"name": "who", "required": True}]}
            send({"jsonrpc": "2.0", "id": request_id, "result": {"prompts": [prompt]}})
        elif method == "ping":
            send({"jsonrpc": "2.0", "id": request_id, "result": {}})
        else:
            send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": f"no method {method}"}})


if __name__ == "__main__":
    main()
