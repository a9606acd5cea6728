"""The HTML report: one self-contained page drawn from summary.json (placeholder, being built)."""

from __future__ import annotations

import html
import json
from pathlib import Path

__all__ = ["write_html"]


def write_html(path: Path, summary_path: Path) -> None:
    data = json.loads(summary_path.read_text(encoding="utf-8"))
    rows = "".join(f"<tr><td>{html.escape(s['name'])}</td><td>{s['outcome']}</td></tr>" for s in data["scenarios"])
    path.write_text(f"<!doctype html><title>unstuck scenarios</title><table>{rows}</table>", encoding="utf-8")
