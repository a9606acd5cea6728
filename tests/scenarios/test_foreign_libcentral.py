"""The whole catalogue against `libcentral`, a CSMS we did not write (docs/harness.md, "Proven on ...")."""

from pathlib import Path

from .foreign_catalogue import FOREIGN, documented_defects, judge_the_catalogue


def test_its_defects_are_in_the_docs_table():
    assert "libcentral" in FOREIGN and any(csms == "libcentral" for csms, _ in documented_defects())


def test_the_whole_catalogue_against_libcentral(tmp_path: Path):
    judge_the_catalogue("libcentral", tmp_path)
