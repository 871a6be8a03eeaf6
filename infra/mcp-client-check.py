"""An MCP SDK client drives `jarvis mcp proxy -- <python> -m mcp_server_time`, as a client configuration would."""
import os
import shutil
import sys

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client

jarvis = sys.argv[1] if len(sys.argv) > 1 else shutil.which("jarvis")
assert jarvis, "jarvis is not on PATH"
command = [jarvis] if len(sys.argv) < 3 else sys.argv[1:]
parameters = StdioServerParameters(
    command=command[0], args=[*command[1:], "mcp", "proxy", "--", sys.executable, "-m", "mcp_server_time"],
    env=dict(os.environ),
)


async def main() -> None:
    async with stdio_client(parameters) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = await session.list_tools()
        assert any(t.name == "get_current_time" for t in tools.tools), tools
        result = await session.call_tool("get_current_time", {"timezone": "UTC"})
        assert not result.is_error, result
        print("mcp proxy answered:", str(result.content[0])[:80])


anyio.run(main)
