"""The quick profile as QA runs it (`make run`): every scenario passes, every report is written.

This is what makes CI fail when a CSMS invariant breaks: the scenarios judge
`csms serve` (a subprocess, fresh SQLite) against the simulator's ground truth.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from scenarios.meta import catalogue

pytestmark = pytest.mark.scenarios


def test_quick_profile_passes_and_writes_reports(tmp_path):
    report = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "scenarios.cli", "run", "--profile", "quick", "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = (proc.stdout + proc.stderr)[-8000:]
    assert proc.returncode == 0, tail
    # A scenario the quick profile runs in more than one OCPP version is a case per version (chaos: 1.6, 2.0.1).
    names = {i.name if i.quick_ocpp == ("1.6",) else f"{i.name}[ocpp{v}]" for i in catalogue() for v in i.quick_ocpp}
    assert "chaos_under_load[ocpp2.0.1]" in names
    summary = json.loads((report / "summary.json").read_text())
    assert {s["name"] for s in summary["scenarios"]} == names
    assert all(s["outcome"] == "passed" and not s["violations"] for s in summary["scenarios"]), tail
    junit = ET.parse(report / "junit.xml").getroot()
    suite = junit if junit.tag == "testsuite" else junit.find("testsuite")
    assert int(suite.get("tests")) == len(names) and int(suite.get("failures")) == 0
    html = (report / "report.html").read_text()
    assert all(name in html for name in names)
    traces = {p.stem for p in (report / "traces").glob("*.jsonl")}
    assert traces == names
    assert "HTML report:" in proc.stdout and "unstuck scenarios" in proc.stdout
    _draws_in_chromium(report / "report.html", len(names))


def _draws_in_chromium(page_path, scenarios: int) -> None:
    """The real report of the run, opened as QA opens it: every scenario's timelines drawn."""
    from tests.scenarios.test_report_html import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: apt-get install -y chromium (the Debian package) to draw the report")
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(page_path.as_uri())
            page.screenshot(path=str(SCREENSHOTS / "quick-profile.png"), full_page=True)
            assert page.get_by_text("PASS", exact=True).first.is_visible()
            visible = [t for t in page.locator("svg.tl").all() if t.is_visible()]
            assert len(visible) >= scenarios  # at least one open timeline per scenario
            for timeline in visible:
                box = timeline.bounding_box()
                assert box and box["width"] > 600 and box["height"] >= 40, box
                assert timeline.locator("rect").count() >= 2  # a truth band and a verdict band
            assert page.locator("svg.fbchart").count() >= 1  # chaos: falsely busy over time
        finally:
            browser.close()
