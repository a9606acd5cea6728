"""The README's fault table is the one `FAULTS` generates (so the two cannot drift apart)."""

from __future__ import annotations

from pathlib import Path

from simulator.faults import markdown_table

README = Path(__file__).resolve().parents[2] / "simulator" / "README.md"


def test_readme_fault_table_is_current():
    assert markdown_table() in README.read_text(encoding="utf-8"), (
        "simulator/README.md is out of date: paste the output of `unstuck-sim faults --markdown`"
    )
