"""The hot-path id tag judge (DBAPI cursor) answers exactly as id_tag_store.judge (ORM) does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import sessionmaker

from csms.core.id_tags import IdTagRecord, IdTagStatus
from csms.db import id_tag_store, ocpp_store
from csms.db.engine import make_engine
from csms.db.hotpath import judge_id_tag
from csms.db.schema import prepare

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TAGS = [
    IdTagRecord("OK1", IdTagStatus.ACCEPTED),
    IdTagRecord("BUSY", IdTagStatus.ACCEPTED, NOW + timedelta(days=1), "PARENT"),
    IdTagRecord("OLD", IdTagStatus.ACCEPTED, NOW - timedelta(seconds=1)),
    IdTagRecord("BLOCKED", IdTagStatus.BLOCKED, None, "PARENT"),
    IdTagRecord("INVALID", IdTagStatus.INVALID),
]


def test_hot_judge_agrees_with_the_orm_judge(db_url):
    engine = make_engine(db_url)
    try:
        prepare(engine)
        sessions = sessionmaker(engine, expire_on_commit=False)
        with sessions() as s, s.begin():
            for tag in TAGS:
                id_tag_store.upsert(s, tag, NOW)
            busy_tx = ocpp_store.start_transaction(s, "CP", 1, "busy", 0, NOW, NOW).transaction_id
        asked = ["OK1", "ok1", " BUSY ", "busy", "Busy", "OLD", "blocked", "INVALID", "NOBODY"]
        seen = set()
        with sessions() as s, s.begin():
            for id_tag in asked:
                for accept_unknown in (False, True):
                    for starting, concurrent in ((None, False), (None, True), (busy_tx, True), (busy_tx + 1, True)):
                        kw = dict(
                            now=NOW, accept_unknown=accept_unknown, starting=starting, check_concurrent=concurrent
                        )
                        orm = id_tag_store.judge(s, id_tag, **kw)
                        hot = judge_id_tag(s, id_tag, **kw)
                        assert hot == orm, (id_tag, kw)
                        seen.add(orm.status)
        # the matrix reaches every answer, so agreement means something
        assert seen == {
            IdTagStatus.ACCEPTED,
            IdTagStatus.CONCURRENT_TX,
            IdTagStatus.EXPIRED,
            IdTagStatus.BLOCKED,
            IdTagStatus.INVALID,
        }
    finally:
        engine.dispose()
