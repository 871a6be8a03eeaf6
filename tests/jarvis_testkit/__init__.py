"""Real PostgreSQL and Redis for tests: what is configured, or private throwaway servers."""
