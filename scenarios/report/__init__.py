"""Reports of a scenario run: `summary.json` (summary.py) and one self-contained HTML page (html.py)."""
