"""The database's outage log: one line when it stops answering, one when it answers again."""

from __future__ import annotations

import logging

from csms.db.outage import OutageLog


def test_an_outage_is_logged_at_its_edges_only(caplog):
    now = [100.0]
    outage = OutageLog(logging.getLogger("test.outage"), clock=lambda: now[0])
    outage.answered()  # no outage: nothing to say
    with caplog.at_level(logging.INFO, logger="test.outage"):
        assert outage.failed("GET /api/connectors", OSError("connection refused\nsecond line")) is True
        for _ in range(500):
            assert outage.failed("read", OSError("connection refused")) is False
        assert outage.down
        now[0] += 1.0
        outage.answered()  # one path answers while another still fails: the same outage
        assert outage.failed("write", OSError("disk full")) is False
        now[0] += 2.0
        outage.answered()  # 2 s after the last failure: not over yet
        assert outage.down
        now[0] += 9.5
        outage.answered()
        outage.answered()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "db.outage_began where=GET /api/connectors error=connection refused (logged once until it answers again)",
        "db.outage_ended after=12.5s failures=502 (requests answered 503, reads and write retries)",
    ]
    assert not outage.down and outage.outages == 1
    assert outage.failed("write", OSError("again")) is True and outage.outages == 2
