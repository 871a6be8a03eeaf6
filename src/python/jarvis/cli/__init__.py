"""The `jarvis` command line: a thin shell over the agent and db APIs."""
