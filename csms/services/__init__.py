"""Orchestration: trio tasks and database units of work around the core's rules."""
