"""`unstuck-scenarios explain` end to end: each field log of tests/data/field-logs/ imported (`unstuck-sim import`),
replayed against an embedded `csms serve` on SQLite, and explained; then again with the healing turned off.

The fast tier explains one log (the dropped StopTransaction) both ways at 1200x; the slow tier the whole
corpus at `UNSTUCK_EXPLAIN_SPEED` (default 240x: a night in about two minutes). The embedded CSMS's
timings are its defaults divided by the speed (scenarios/explain.py), so what heals, and when in log
time, does not depend on the speed beyond a sweep interval.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from scenarios.cli import main
from simulator.fieldlog.importers import import_log
from tests.support.console import CHROMIUM, SCREENSHOTS, launch

CORPUS = Path(__file__).resolve().parents[1] / "data" / "field-logs"
# Healing off: no maintenance sweeps, and a stored status never goes stale.
OFF = ["--csms-arg=--maintenance-interval-seconds=0", "--csms-arg=--freshness-minutes=100000"]
SLOW_SPEED = float(os.environ.get("UNSTUCK_EXPLAIN_SPEED", "240"))

# log -> (connector, finding kind, healing words with healing on, with it off); None: no finding expected
EXPECTED: dict[str, tuple[tuple[str, int], str | None, str, str]] = {
    "abb-terra-dropped-stop": (
        ("ABB-TERRA-0042", 1),
        "busy_while_free",
        "maintenance.close_orphaned",
        "nothing would have: transaction",
    ),
    "alpitronic-unreported-connector": (
        ("ALP-HYC300-0117", 2),
        "busy_unreported",
        "the freshness window",
        "nothing would have: the CSMS kept trusting its stored status",
    ),
    "evbox-remote-start-rejected": (("EVBOX-BT-4417", 2), None, "", ""),
    "keba-reboot-mid-session": (
        ("KEBA-P30-1893", 1),
        "busy_while_free",
        "maintenance.close_orphaned",
        "nothing would have: transaction",
    ),
    "evlink-stuck-finishing": (
        ("EVLINK-PRO-2260", 1),
        "finishing_no_transaction",
        "connection dropping after the log's CSMS sent Reset",
        "connection dropping after the log's CSMS sent Reset",
    ),
    "delta-offline-night": (
        ("DELTA-ACMAX-0563", 1),
        "busy_while_free",
        "maintenance.close_orphaned",
        "nothing would have: transaction",
    ),
}


def explain(tmp_path: Path, name: str, speed: float, *extra: str, capsys) -> tuple[dict, str]:
    frames = tmp_path / f"{name}.frames.jsonl"
    if not frames.exists():
        import_log(CORPUS / f"{name}.jsonl", frames)
    out = tmp_path / f"{name}{'-off' if extra else ''}.html"
    code = main(["explain", str(frames), "--speed", str(speed), "-o", str(out), *extra])
    text = capsys.readouterr().out
    assert code == 0, text
    assert out.exists() and "<svg" in out.read_text(encoding="utf-8")
    return json.loads(out.with_suffix(".json").read_text(encoding="utf-8")), text


def check(data: dict, text: str, name: str, *, healing: bool) -> None:
    key, kind, on_words, off_words = EXPECTED[name]
    [record] = data["scenarios"]
    errors = record.get("notes")
    found = [v for v in record["violations"] if (v["cp"], v["connector"]) == key]
    if kind is None:
        assert not found, (text, errors)
        assert "RemoteStartTransaction: Rejected" in text
        assert record["outcome"] == "clear"
        return
    assert [v["kind"] for v in found] == [kind], text
    finding = found[0]
    assert finding["verdict"]["reasons"], finding  # the evidence the CSMS held
    healed = finding["truth"]["healed"]
    words = on_words if healing else off_words
    assert words in healed, (healed, text)
    assert finding["message"] in " ".join(text.split("\n")), text  # the same words on stdout
    assert data["overall"] == "STUCK"


def screenshot(html: Path, name: str) -> None:
    """The explained report in Debian's chromium (skipped without it): reports/screenshots/explain-NAME.png."""
    if not CHROMIUM.exists():
        return
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(html.as_uri())
            page.screenshot(path=str(SCREENSHOTS / f"explain-{name}.png"), full_page=True)
            assert page.locator("svg.tl").count() >= 1
            assert page.locator("svg.tl rect.v-busy").count() > 0  # the stuck stretch is drawn
            assert page.locator("article.violation").count() >= 1
            assert "STUCK" in page.locator("header.run .big").inner_text()
        finally:
            browser.close()


def test_the_dropped_stop_is_explained_and_healing_off_explains_nothing_heals_it(tmp_path, capsys):
    data, text = explain(tmp_path, "abb-terra-dropped-stop", 1200, capsys=capsys)
    check(data, text, "abb-terra-dropped-stop", healing=True)
    assert "orphan rule" in text and "open_transaction:" in text
    screenshot(tmp_path / "abb-terra-dropped-stop.html", "abb-terra-dropped-stop")
    data, text = explain(tmp_path, "abb-terra-dropped-stop", 1200, *OFF, capsys=capsys)
    check(data, text, "abb-terra-dropped-stop", healing=False)


def test_bad_input_exits_2_with_a_clear_message(tmp_path, capsys):
    assert main(["explain", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    raw = CORPUS / "abb-terra-dropped-stop.jsonl"  # a field log, not yet imported
    assert main(["explain", str(raw)]) == 2
    assert "unstuck-sim import" in capsys.readouterr().err
    frames = tmp_path / "f.jsonl"
    import_log(raw, frames)
    assert main(["explain", str(frames), "--at", "tomorrow"]) == 2
    assert "clock time" in capsys.readouterr().err


@pytest.mark.slow_tier
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_corpus_log_is_explained_with_healing_on_and_off(tmp_path, capsys, name):
    data, text = explain(tmp_path, name, SLOW_SPEED, capsys=capsys)
    check(data, text, name, healing=True)
    data, text = explain(tmp_path, name, SLOW_SPEED, *OFF, capsys=capsys)
    check(data, text, name, healing=False)
