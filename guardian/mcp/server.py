"""The MCP stdio server: :data:`guardian.mcp.tools.TOOLS` through the official SDK's
low-level server (hand-written JSON Schemas, results and errors exactly as we shape them).

Each call runs in a worker thread (the tools block on the store, the daemon's socket or a
batch); a refusal is a tool error (``isError``) whose text is the one-line message and whose
structured content names category, path, line and column, so the model can fix the input.
Every version a call records is labelled with this run's session: ``--session`` or
``$GUARDIAN_SESSION``, else ``mcp-CLIENT-ID`` (the client's name from its initialize
request, an id made once per server run).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from guardian import __version__
from guardian.errors import GuardianError
from guardian.mcp.tools import TOOLS, Context, ToolError

INSTRUCTIONS = (
    "Guardian keeps every version of every file in this project. Prefer write_files / "
    "edit_file to write: the content is validated before it lands (a refusal says path, "
    "line, column), many files change all or nothing, and the old contents are kept. "
    "file_history, show_version, diff_versions and restore (dry run first) undo mistakes.")


def session_label(client: str | None, run_id: str) -> str:
    """``mcp-CLIENT-ID``: the client's name made safe for a label, and this run's id."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", client or "")[:40].strip("-") or "client"
    return f"mcp-{name}-{run_id}"


def build(ctx: Context) -> Server[Any]:
    """The server for one stdio connection (one client)."""
    run_id = uuid.uuid4().hex[:12]
    fixed = ctx.session

    async def list_tools(_ctx: Any, _params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[
            types.Tool(name=name, description=description, input_schema=schema)
            for name, (_f, description, schema) in TOOLS.items()])

    async def call_tool(rctx: Any, params: types.CallToolRequestParams
                        ) -> types.CallToolResult:
        if ctx.session is None:
            client_params = getattr(rctx.session, "client_params", None)
            info = getattr(client_params, "client_info", None)
            ctx.session = fixed or session_label(getattr(info, "name", None), run_id)
        entry = TOOLS.get(params.name)
        if entry is None:
            return _error(ToolError(f"unknown tool {params.name!r} (known: "
                                    f"{', '.join(TOOLS)})"))
        func = entry[0]
        arguments = dict(params.arguments or {})
        try:
            out = await anyio.to_thread.run_sync(lambda: func(ctx, arguments))
        except ToolError as e:
            return _error(e)
        except GuardianError as e:
            return _error(ToolError.of(e))
        except Exception as e:  # never a dead server for one bad call
            return _error(ToolError(f"internal error: {type(e).__name__}: {e}",
                                    category="system"))
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=json.dumps(out, indent=1))],
            structured_content=out)

    return Server("guardian", version=__version__, instructions=INSTRUCTIONS,
                  on_list_tools=list_tools, on_call_tool=call_tool)


def _error(e: ToolError) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=str(e))],
                                structured_content=e.to_json(), is_error=True)


def serve(ctx: Context) -> None:
    """Serve one client on stdin/stdout until it closes them."""
    server = build(ctx)

    async def main() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(main)
