"""The console's transactions reads on a real database: filters, newest first, paging, the linked session's fee."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from csms.db import ocpp_store
from csms.db.engine import make_engine
from csms.db.schema import prepare
from csms.ui import transactions_store
from csms.ui.transaction_rows import TxFilter
from tests.support.db import with_db

DAY = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _seed(url: str) -> list[int]:
    engine = make_engine(url)
    prepare(engine)
    engine.dispose()

    def work(s):
        ids = []
        for n, (cp, tag) in enumerate([("A1", "t1"), ("A2", "T2"), ("B1", "t1"), ("A1", "X"), ("B2", "t1")]):
            at = DAY + timedelta(days=n)
            ids.append(ocpp_store.start_transaction(s, cp, 1, tag, 100, at, at).transaction_id)
        ocpp_store.stop_transaction(s, ids[0], cp_id="A1", meter_stop=600, stop_time=DAY, reason="Local", now=DAY)
        return ids

    return with_db(url, work)


def test_filters_and_paging(db_url):
    ids = _seed(db_url)

    def shown(f: TxFilter, limit: int = 200) -> tuple[list[int], int | None]:
        page = with_db(db_url, lambda s: transactions_store.page_of(s, f, limit))
        return [r.transaction_id for r in page.rows], page.older

    assert shown(TxFilter()) == (ids[::-1], None)
    first = shown(TxFilter(), limit=2)
    assert first == ([ids[4], ids[3]], ids[3])
    assert shown(TxFilter(before=first[1]), limit=2) == ([ids[2], ids[1]], ids[1])
    assert shown(TxFilter(cp="A"))[0] == [ids[3], ids[1], ids[0]]
    assert shown(TxFilter(tag="T1"))[0] == [ids[4], ids[2], ids[0]]  # either case, as chargers spell it
    assert shown(TxFilter(state="closed"))[0] == [ids[0]]
    assert shown(TxFilter(state="open", reason="Local"))[0] == []
    assert shown(TxFilter(reason="Local"))[0] == [ids[0]]
    since, until = (DAY + timedelta(days=1)).date(), (DAY + timedelta(days=2)).date()
    assert shown(TxFilter(since=since, until=until))[0] == [ids[2], ids[1]]
    everything = with_db(db_url, lambda s: transactions_store.all_of(s, TxFilter(cp="A1")))
    assert [r.transaction_id for r in everything] == [ids[3], ids[0]] and everything[1].meter_stop == 600
    detail = with_db(db_url, lambda s: transactions_store.detail_of(s, ids[0]))
    assert detail is not None and detail.station_id is None and detail.samples == []
    assert with_db(db_url, lambda s: transactions_store.detail_of(s, 999)) is None
