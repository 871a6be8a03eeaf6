"""Jarvis over the Model Context Protocol: `jarvis mcp serve` (Jarvis' own tools) and `jarvis mcp proxy`
(an audit proxy for any MCP server). Both record every tool call in the audit trail, write-ahead.

This package composes `jarvis.agent` and `jarvis.db`; nothing there imports it.
"""
