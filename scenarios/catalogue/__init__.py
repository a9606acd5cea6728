"""The scenario catalogue: one module per scenario, each an ordinary pytest-trio test (see scenarios/plugin.py)."""
