"""Database.read_grouped: the hot path's small reads share one thread hand-off, each in its own transaction."""

from __future__ import annotations

import trio
from sqlalchemy import text


async def test_concurrent_reads_share_hand_offs_and_fail_alone(database):
    results: dict[int, int] = {}
    errors: dict[int, BaseException] = {}

    async def one(i: int) -> None:
        def fn(s):
            if i == 7:
                s.execute(text("SELECT * FROM no_such_table"))
            return s.execute(text(f"SELECT {i} * 2")).scalar()

        try:
            results[i] = await database.read_grouped(fn)
        except Exception as exc:  # the bad one, only
            errors[i] = exc

    async with trio.open_nursery() as n:
        for i in range(40):
            n.start_soon(one, i)
    assert results == {i: i * 2 for i in range(40) if i != 7}
    assert list(errors) == [7]
    # 40 reads queued before the reader ran: far fewer hand-offs than reads (without grouping: 40)
    assert 1 <= database.read_groups <= 5


async def test_without_the_writer_it_is_a_plain_read(db_url):
    from csms.db.database import Database
    from csms.db.engine import make_engine

    engine = make_engine(db_url)
    try:
        db = Database(engine)
        assert await db.read_grouped(lambda s: s.execute(text("SELECT 3")).scalar()) == 3
        assert db.read_groups == 0
    finally:
        engine.dispose()
