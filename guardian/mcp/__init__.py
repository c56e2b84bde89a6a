"""``guardian mcp``: Guardian's safe write tools for AI agents, over the Model Context Protocol.

:mod:`guardian.mcp.tools` is the Guardian side (plain dicts in and out, no SDK);
:mod:`guardian.mcp.server` exposes it over stdio with the official ``mcp`` SDK, which only
that module imports (and only when ``guardian mcp`` runs).
"""
