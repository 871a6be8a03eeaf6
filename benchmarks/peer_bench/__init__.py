"""The peers benchmark (`./pants run benchmarks:peers`): Jarvis against raw psycopg, LangGraph and DBOS.

One module per concern: `rounds` (alternating timed rounds and their statistics), `raw`, `jarvis_side`,
`langgraph_side`, `dbos_side` (the contenders), `footprint` (what a unit writes: commits, rows, WAL,
bytes on disk), `growth` (the `--rows N` run), `goals` (the issue's six goals, judged from the figures)
and `report` (the Markdown tables).
"""
