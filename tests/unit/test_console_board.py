"""The board's arrangement for a big site (csms.ui.board): search, filters, groups, order. Pure."""

from __future__ import annotations

from csms.ui.board import arrange_board, matches
from csms.ui.words import BoardRow


def row(cp: str, n: int, verdict: str = "free", *, stuck: bool = False, tags=(), txs=(), station=None) -> BoardRow:
    return BoardRow(
        station_id=station or cp,
        charge_point_id=cp,
        connector_id=n,
        verdict=verdict,
        reasons=[],
        live="-",
        stored="-",
        transaction="-",
        reservation="-",
        last_seen="now",
        suspicions=["odd"] if stuck else [],
        online=verdict != "offline",
        tags=tuple(tags),
        transaction_ids=tuple(txs),
    )


def test_a_search_finds_any_part_of_an_id_a_whole_tag_or_a_transaction_id():
    r = row("AC-0042", 1, "busy", tags=("TAG7",), txs=("17", "st-9f"), station="Garage 3")
    assert matches(r, "") and matches(r, "c-004") and matches(r, "ac-0042") and matches(r, "garage")
    assert matches(r, "tag7") and matches(r, "17") and matches(r, "st-9f")
    assert not matches(r, "TAG") and not matches(r, "1") and not matches(r, "AC-0043")


def test_suspected_stuck_first_then_busy_then_offline_then_free_chargers_grouped():
    rows = [
        row("A", 1),
        row("A", 2),
        row("B", 1, "offline"),
        row("C", 2, "busy"),
        row("C", 1),
        row("D", 1, "busy", stuck=True),
    ]
    view = arrange_board(rows)
    assert [g.charge_point_id for g in view.groups] == ["D", "C", "B", "A"]
    assert [r.connector_id for r in view.groups[1].rows] == [1, 2]  # in connector order within a charger
    assert [(r.charge_point_id, r.connector_id) for r in view.suspected] == [("D", 1)]
    assert view.counts == {"free": 3, "busy": 2, "offline": 1, "stuck": 1}
    assert view.groups[3].all_free and not view.groups[1].all_free
    assert [g.charge_point_id for g in arrange_board(rows, sort="charger").groups] == ["A", "B", "C", "D"]


def test_filters_narrow_the_rows_but_counts_stay_those_of_the_search():
    rows = [row("A", 1, "busy"), row("A", 2), row("B", 1, "busy", stuck=True), row("C", 1, tags=("X1",))]
    busy = arrange_board(rows, busy=True)
    assert [(r.charge_point_id, r.connector_id) for r in busy.rows] == [("B", 1), ("A", 1)]
    assert busy.counts["free"] == 2 and busy.matching == 2
    assert [r.charge_point_id for r in arrange_board(rows, stuck=True).rows] == ["B"]
    found = arrange_board(rows, q="b")
    assert [r.charge_point_id for r in found.rows] == ["B"] and found.counts["busy"] == 1


def test_a_page_holds_whole_chargers_up_to_the_limit():
    rows = [row(f"CP{i:03}", n) for i in range(10) for n in (1, 2)]
    view = arrange_board(rows, sort="charger", limit=5)
    assert [g.charge_point_id for g in view.groups] == ["CP000", "CP001"]  # a third would pass 5 connectors
    assert view.shown == 4 and view.matching == 20
    assert len(arrange_board(rows[:2], limit=1).groups) == 1  # one charger bigger than the limit is still shown
