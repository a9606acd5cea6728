"""The whole catalogue in OCPP 2.0.1 against `libcentral201`, a 2.0.1 CSMS we did not write (docs/harness.md)."""

from pathlib import Path

from .foreign_catalogue import FOREIGN, documented_defects, judge_the_catalogue


def test_its_defects_are_in_the_docs_table():
    assert "libcentral201" in FOREIGN and any(csms == "libcentral201" for csms, _ in documented_defects())


def test_the_whole_catalogue_in_201_against_libcentral201(tmp_path: Path):
    judge_the_catalogue("libcentral201", tmp_path)
