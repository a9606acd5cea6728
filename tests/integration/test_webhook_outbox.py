"""The webhook outbox's rows on a real database (SQLite and PostgreSQL): written once, bounded, taken and marked."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from csms.core.webhooks import WebhookEvent, WebhookTarget
from csms.db import webhook_outbox_store as outbox
from csms.db.models import WebhookOutbox
from csms.services.webhooks import WebhookDispatcher

NOW = datetime(2026, 12, 8, 0, 0, tzinfo=UTC)


def _rows(n: int, receiver: str = "http://r/hook", first: int = 0) -> list[tuple[str, str, str, str]]:
    return [(f"e{i}", receiver, "connector.freed", "{}") for i in range(first, first + n)]


async def _states(database) -> dict[str, str]:
    return await database.read(lambda s: dict(s.execute(select(WebhookOutbox.event_id, WebhookOutbox.state)).all()))


async def test_an_event_is_one_row_however_often_written_and_the_oldest_go_past_the_bound(database):
    dropped, pending = await database.write(lambda s: outbox.enqueue(s, _rows(3), NOW, queue_size=4))
    assert dropped == [] and pending == {"http://r/hook": 3}
    dropped, pending = await database.write(lambda s: outbox.enqueue(s, _rows(4, first=1), NOW, queue_size=4))
    assert [d.event_id for d in dropped] == ["e0"] and pending == {"http://r/hook": 4}  # e1-e3 not written twice
    assert await _states(database) == {
        "e0": "dropped",
        "e1": "pending",
        "e2": "pending",
        "e3": "pending",
        "e4": "pending",
    }


async def test_taken_rows_are_marked_in_order_and_a_stale_mark_changes_nothing(database):
    await database.write(lambda s: outbox.enqueue(s, _rows(2), NOW, queue_size=10))
    [first] = await database.write(lambda s: outbox.take(s, "http://r/hook", NOW, 1))
    assert first.event_id == "e0" and (await _states(database))["e0"] == "sending"
    await database.write(lambda s: outbox.mark(s, first.row_id, "delivered", 1, NOW))
    await database.write(lambda s: outbox.mark(s, first.row_id, "failed", 6, NOW))  # a former holder's, late
    assert (await _states(database))["e0"] == "delivered"
    [second] = await database.write(lambda s: outbox.take(s, "http://r/hook", NOW, 1))
    assert second.event_id == "e1"
    # Its holder died: the next one takes it again.
    assert await database.write(lambda s: outbox.requeue_sending(s, "http://r/hook")) == 1
    [again] = await database.write(lambda s: outbox.take(s, "http://r/hook", NOW, 1))
    assert again.event_id == "e1"


async def test_a_burst_of_ten_thousand_events_is_written_in_bounded_statements(database):
    """More rows than PostgreSQL takes parameters in one statement (65,535 / 8 a row)."""
    hooks = WebhookDispatcher([WebhookTarget("http://127.0.0.1:9/hook")], database, queue_size=100_000)
    events = [WebhookEvent("charge_point.offline", {"chargePointId": f"CP{i}"}, "t") for i in range(10_000)]
    await hooks.publish(events)
    assert hooks.receivers[0].queued == 10_000 and hooks.receivers[0].dropped == 0
    small = WebhookDispatcher([WebhookTarget("http://127.0.0.1:9/other")], database, queue_size=50)
    await small.publish(events)  # past its bound: only the newest 50 are written
    assert small.receivers[0].queued == 50 and small.receivers[0].dropped == 10_000 - 50


def test_two_receivers_that_differ_in_a_query_are_two():
    a, b = WebhookTarget("https://h.example/hook?to=a"), WebhookTarget("https://h.example/hook?to=b")
    assert a.label == b.label and a.key != b.key and len(WebhookTarget("https://h.example/" + "x" * 500).key) <= 300
