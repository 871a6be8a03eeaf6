"""`jarvis mcp serve` and `jarvis mcp proxy -- CMD [ARGS…]`: Jarvis and the Model Context Protocol.

Both speak MCP on stdout, so nothing else is ever printed there: errors and logs go to stderr.
"""

from __future__ import annotations

import typer

from jarvis.cli.listen import listening_socket, shown_address
from jarvis.cli.session import ExitCode, errors, fail, reported_errors, settings_or_exit
from jarvis.config.extras import require


def _require_mcp(command: str) -> None:
    """The [mcp] extra (the MCP SDK, anyio): imported by the commands that use it, so the CLI runs without it."""
    with reported_errors():
        for module in ("anyio", "jarvis.mcp.proxy", "jarvis.mcp.serve"):
            require(module, extra="mcp", feature=f"jarvis mcp {command}")


app = typer.Typer(help="Jarvis over MCP: its own tools, or an audit proxy for any MCP server.", no_args_is_help=True)


@app.command("serve")
def serve_command(
    http: bool = typer.Option(False, "--http", help="Serve streamable HTTP (path /mcp) instead of stdio."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind with --http."),
    port: int = typer.Option(
        8766, "--port", min=0, max=65535, help="Port to bind with --http (`jarvis ui` uses 8765; 0: any free port)."
    ),
    allow_remote: bool = typer.Option(
        False, "--allow-remote", help="Allow a non-loopback --host: anyone who reaches it can use the tools."
    ),
) -> None:
    """Offer the agent's state, memory and audit queries as MCP tools; every call is recorded."""
    _require_mcp("serve")
    import anyio

    from jarvis.mcp.serve import LOOPBACK_HOSTS, serve_http, serve_stdio
    from jarvis.mcp.sessions import start_agent

    if http and host not in LOOPBACK_HOSTS and not allow_remote:
        fail(
            f"--host {host} is not a loopback address, and the MCP server has no authentication. "
            "Fix: bind 127.0.0.1 (the default), or pass --allow-remote if the network is trusted",
            ExitCode.BAD_INPUT,
        )
    settings = settings_or_exit()
    # Bound before the agent starts: a busy port is one line and exit 2, and nothing is recorded.
    listener = listening_socket(host, port, command="jarvis mcp serve --http") if http else None
    with reported_errors():
        agent = start_agent(settings, "serve", "http" if http else "stdio")
        try:
            if listener is not None:
                with listener:
                    errors.print(f"MCP over streamable HTTP at {shown_address(host, listener)}mcp", highlight=False)
                    anyio.run(serve_http, agent, host, listener)
            else:
                anyio.run(serve_stdio, agent)
        finally:
            agent.shutdown()


@app.command(
    "proxy",
    context_settings={"allow_interspersed_args": False},
)
def proxy_command(
    command: list[str] = typer.Argument(..., help="The upstream MCP server's command and arguments, after `--`."),
    call_timeout: float
    | None = typer.Option(
        None,
        "--call-timeout",
        min=0.1,
        max=86_400,
        help="Seconds a tools/call may wait for the upstream's answer; then it is recorded failed. "
        "Default: JARVIS_MCP_CALL_TIMEOUT (300).",
        show_default=False,
    ),
) -> None:
    """Run the MCP server CMD behind an audit proxy: every tools/call is recorded before it is forwarded."""
    _require_mcp("proxy")
    import anyio

    from jarvis.mcp.proxy import Proxy, shown_command
    from jarvis.mcp.sessions import start_agent

    settings = settings_or_exit()
    timeout = call_timeout if call_timeout is not None else settings.mcp_call_timeout
    with reported_errors():
        agent = start_agent(settings, "proxy", shown_command(command))
        try:
            code = anyio.run(lambda: Proxy(agent, command, call_timeout=timeout).run())
        finally:
            agent.shutdown()
    raise typer.Exit(code)
