"""The HTML report: structure and escaping (no browser), then drawn in headless Chromium.

The browser test needs the Debian `chromium` package (/usr/bin/chromium) and the
`playwright` Python package (dev extra); it never downloads a browser. Its
screenshot lands in reports/screenshots/report.png (ignored by git).
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from scenarios.report.html import TRUTH_STATES, write_html
from tests.support.console import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

from .synthetic import HOSTILE_CP, summary


class Elements(HTMLParser):
    """Every start tag with its attributes, and the page's text, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data):
        self.text.append(data)

    def having(self, tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and cls in a.get("class", "").split()]


def render(tmp_path: Path, data: dict) -> tuple[str, Elements]:
    src = tmp_path / "summary.json"
    src.write_text(json.dumps(data), encoding="utf-8")
    out = tmp_path / "report.html"
    write_html(out, src)
    page = out.read_text(encoding="utf-8")
    parsed = Elements()
    parsed.feed(page)
    return page, parsed


def test_every_scenario_its_verdict_and_its_violations_are_on_the_page(tmp_path):
    data = summary()
    page, el = render(tmp_path, data)
    text = " ".join(el.text)

    assert ">FAIL<" in page  # a failed scenario fails the run
    for i, s in enumerate(data["scenarios"]):
        section = [a for t, a in el.tags if t == "section" and a.get("id") == f"s{i}"]
        assert section, s["name"]
        assert s["name"] in text and s["rerun"] in text
    failed = data["scenarios"][1]
    violation = failed["violations"][0]
    assert violation["message"] in text
    assert "open_transaction:17" in text  # the CSMS's reasons
    assert '"persistedStatus": {\n' in text  # raw signals, pretty-printed
    assert "drop_stop_transaction" in text  # fault history
    assert len(el.having("article", "violation")) == 1
    assert [t for t, a in el.tags if t == "details" and "error" in a.get("class", "")]  # error text, collapsible
    assert failed["error"].splitlines()[1].replace("<", "&lt;").replace(">", "&gt;") in page


def test_one_timeline_per_connector_with_both_bands_and_the_legend(tmp_path):
    data = summary()
    _, el = render(tmp_path, data)

    timelines = el.having("svg", "tl")
    expected = [
        f"{c['cp']} connector {c['connector']}"
        for s in data["scenarios"]
        if s["timeline"]
        for c in s["timeline"]["connectors"]
    ]
    assert sorted(a["aria-label"] for a in timelines) == sorted(expected)
    states = {c for t, a in el.tags if t == "rect" for c in a.get("class", "").split()}
    assert {"charging", "unplugged", "v-free", "v-busy", "v-offline", "off"} <= states
    legend = el.having("div", "legend")
    assert len(legend) == 2  # one per scenario with a timeline
    assert {c for a in el.having("i", "sw") for c in a["class"].split()} >= set(TRUTH_STATES) | {"fb", "off"}
    assert len(el.having("svg", "fbchart")) == 2


def test_a_connector_idle_but_reported_busy_is_marked_and_listed_first(tmp_path):
    data = summary()
    page, el = render(tmp_path, data)

    failed = page[page.index('id="s1"') : page.index('id="s2"')]
    first = failed.index('class="conn')
    assert failed[first:].startswith('class="conn bad"')  # the connector with the violation leads
    stuck = failed[first : failed.index("</svg>", first)]
    # idle from 18 s of 60 s on, busy all along: one falsely busy stretch from 30% to the end
    assert re.search(r'<rect class="fb" x="30\.00%" y="\d+" width="70\.00%"', stuck), stuck[:2000]
    # the violation itself, 40.2 s .. 59.8 s, under the bands
    assert re.search(r'<rect class="vspan" x="67\.00%"', stuck)
    # recovery start (20 s) and window end (40 s) as lines
    assert 'class="rec" x1="33.33%"' in stuck and 'class="win" x1="66.67%"' in stuck


def test_hostile_strings_are_escaped_everywhere(tmp_path):
    page, el = render(tmp_path, summary())

    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;cp&#x27;)&lt;/script&gt;&amp;&quot;x" in page
    assert not [t for t, _ in el.tags if t == "script"]
    assert HOSTILE_CP + " connector 1" in [a["aria-label"] for a in el.having("svg", "tl")]


def test_a_big_run_stays_small_and_puts_quiet_connectors_away(tmp_path):
    data = summary(big=100)  # 400 connectors, ~200 samples each
    page, el = render(tmp_path, data)

    assert len(page.encode()) < 4_000_000
    chaos = page[page.index('id="s3"') :]
    bad = sum(1 for s in data["scenarios"][3]["timeline"]["connectors"] if s["violations"])
    assert bad and chaos.count('class="conn bad"') == bad
    head = chaos[: chaos.index('<details class="group"')]
    assert head.count('class="conn') == bad  # only the connectors with violations are open
    assert re.search(r"<summary>\d+ connectors without faults or violations</summary>", chaos)
    assert len([a for a in el.having("svg", "tl")]) == 400 + 4 + 3


def test_a_scenario_without_fleet_or_timeline_still_renders(tmp_path):
    data = summary()
    data["scenarios"] = [data["scenarios"][2]]
    data["passed"], data["failed"] = 0, 1
    page, el = render(tmp_path, data)
    assert "the fleet never started" in page and not el.having("svg", "tl")


def test_the_report_draws_in_chromium(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: apt-get install -y chromium (the Debian package) to draw the report")
    from playwright.sync_api import sync_playwright

    data = summary()
    render(tmp_path, data)
    dialogs: list[str] = []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto((tmp_path / "report.html").as_uri())
            page.screenshot(path=str(SCREENSHOTS / "report.png"), full_page=True)

            timelines = page.locator("svg.tl")
            assert timelines.count() == 7
            for k in range(timelines.count()):
                box = timelines.nth(k).bounding_box()
                assert box and box["width"] > 600 and box["height"] >= 40, box
                assert timelines.nth(k).locator("rect.charging, rect.v-busy").count() > 0
            # the bands really paint: a charging rect has width, and its colour is the legend's
            charging = page.locator("svg.tl rect.charging").first.bounding_box()
            assert charging and charging["width"] > 1 and charging["height"] > 10
            fill = page.locator("svg.tl rect.charging").first.evaluate("e => getComputedStyle(e).fill")
            swatch = page.locator(".legend .sw.charging").first.evaluate("e => getComputedStyle(e).backgroundColor")
            assert fill == swatch != "rgba(0, 0, 0, 0)"
            stuck = page.locator("#s1 svg.tl rect.fb").first.bounding_box()
            assert stuck and stuck["width"] > 0.6 * 1100  # 70% of the run, idle but busy
            assert page.locator(".legend").first.is_visible()
            assert page.get_by_text("idle but not reported free").first.is_visible()
            assert page.locator("svg.fbchart path.fbline").count() == 2

            page.set_viewport_size({"width": 390, "height": 844})  # a phone: still one column, still drawn
            box = page.locator("#s1 svg.tl").first.bounding_box()
            assert box and 250 < box["width"] < 390
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.screenshot(path=str(SCREENSHOTS / "report-phone.png"))
        finally:
            browser.close()
    assert dialogs == []  # the hostile charge point id did not run
