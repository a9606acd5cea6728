"""A quiet 2.0.1 transaction is asked of the station itself (GetTransactionStatus) before anything else.

A station whose Ended was lost and whose events never named an EVSE (on a station with two) leaves a
transaction no status can close: the orphan rule needs an Available on its connector. The quiet-transaction
probe asks the station: over, with nothing queued, the transaction is closed (Orphaned, estimated from its
last sample); still ongoing, or its Ended queued, it is left alone.
"""

from __future__ import annotations

import pytest
import trio

from tests.e2e.test_ocpp201 import blocking, transactions
from tests.interop201.libstation import LibStation


@pytest.fixture
def csms_args() -> list[str]:
    return ["--allow-unknown-chargers", "--quiet-transaction-seconds", "2", "--maintenance-interval-seconds", "0.5"]


async def _closed(http, prefix: str, timeout: float) -> dict | None:
    with trio.move_on_after(timeout):
        while True:
            (tx,) = await transactions(http, prefix)
            if tx["stopTime"] is not None:
                return tx
            await trio.sleep(0.2)
    return None


async def test_a_quiet_transaction_the_station_says_is_over_is_closed(csms):
    with LibStation("V201Q") as st:
        await blocking(st.connect, csms.url("V201Q"))
        await blocking(st.boot)
        for evse in (1, 2):
            await blocking(st.status, evse, 1, "Available")
        # Its Started was lost: the CSMS hears of it from an Updated that names no EVSE (two EVSEs: none guessed).
        await blocking(st.transaction_event, "Updated", "lost-start", "MeterValuePeriodic", seq_no=3, meter_wh=5000)
        async with csms.client() as http:
            st.behaviour.ongoing_indicator = True  # still running: quiet is not over
            assert await _closed(http, "V201Q", 3.5) is None
            st.behaviour.ongoing_indicator, st.behaviour.messages_in_queue = False, True  # its Ended on the way
            assert await _closed(http, "V201Q", 3.5) is None
            st.behaviour.messages_in_queue = False  # over, nothing of it left: its Ended was lost
            tx = await _closed(http, "V201Q", 8.0)
        assert tx is not None and tx["stopReason"] == "Orphaned" and tx["meterStop"] == 5000, tx
        assert st.received("GetTransactionStatus")[-1].payload == {"transactionId": "lost-start"}
    assert "GetTransactionStatus: not ongoing, nothing queued" in csms.log()
