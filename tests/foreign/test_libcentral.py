"""The `ocpp` library's central system as a process with a JSON API, judged through its network adapter.

What a QA team does with a CSMS they did not write: start it, point a fleet at it,
and ask it through `LibCsmsAdapter(ocpp_url, api_url, token)`. Real sockets, real
time, a few seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
import trio

from scenarios.adapters.base import BUSY, FREE, OFFLINE, CsmsAdapter, NotSupportedError, Outcome
from tests.scenarios.libcsms_adapter import LibCsmsAdapter
from tests.simulator.conftest import make_spec, start_fleet

from .launch import ForeignCsms, launch

TOKEN = "libcentral-test-token"


@pytest.fixture
def libcentral() -> Iterator[ForeignCsms]:
    proc = launch("tests.foreign.libcentral_serve", TOKEN, "--interval", "1", "--response-timeout", "2")
    try:
        yield proc
    finally:
        assert proc.stop() == 0, "libcentral did not end cleanly on SIGTERM"


async def verdict_becomes(adapter: LibCsmsAdapter, key: tuple[str, int], want: str, timeout: float = 5.0) -> None:
    with trio.move_on_after(timeout):
        while (await adapter.verdicts([key]))[key].verdict != want:
            await trio.sleep(0.05)
        return
    raise AssertionError(f"{key} never became {want}: {(await adapter.verdicts([key]))[key]}")


async def test_start_stop_unlock_and_what_it_stored(nursery, libcentral):
    fleet = await start_fleet(
        nursery, libcentral.ocpp_url, make_spec(connectors=2, faults=["reject_remote_start=1,connectors=2"])
    )
    adapter = LibCsmsAdapter(libcentral.ocpp_url, libcentral.api_url, libcentral.token)
    assert isinstance(adapter, CsmsAdapter)
    cp = "CP0001"
    verdicts = await adapter.verdicts([(cp, 1), (cp, 2), ("CP9999", 1)])
    assert [v.verdict for v in verdicts.values()] == [FREE, FREE, OFFLINE], verdicts

    started = await adapter.start(cp, 1, "APP01", Decimal("0.30"))
    assert started.accepted and started.status == 200, started
    await verdict_becomes(adapter, (cp, 1), BUSY)
    assert adapter.transaction_of(started.session_id) == fleet[cp].connector_truth(1).transaction_id
    rejected = await adapter.start(cp, 2, "APP02", Decimal("0.30"))
    assert not rejected.accepted and rejected.code == Outcome.REMOTE_START_REJECTED, rejected
    gone = await adapter.start("CP9999", 1, "APP03", Decimal("0.30"))
    assert (gone.accepted, gone.code, gone.status) == (False, Outcome.CHARGER_OFFLINE, 404), gone

    await trio.sleep(1.2)  # a meter sample or so
    assert await adapter.stop(started.session_id)
    assert not await adapter.stop("no-such-session")
    with trio.fail_after(5):
        while fleet[cp].connector_truth(1).transaction_id is not None:
            await trio.sleep(0.05)
    await fleet[cp].unplug(1)  # no driver in this fleet: the test is the driver
    await verdict_becomes(adapter, (cp, 1), FREE)
    (tx,) = await adapter.transactions("CP")
    truth = fleet[cp].connector_truth(1)
    assert (tx.cp, tx.connector, tx.id_tag, tx.closed, tx.stop_reason) == (cp, 1, "APP01", True, "Remote"), tx
    assert tx.meter_stop is not None and tx.meter_stop > tx.meter_start and tx.session is None
    assert truth.transaction_id is None and await adapter.transactions("XX") == []

    unlocked = await adapter.unlock(cp, 2)  # nothing on it: the charger unlocks, nothing to clean anyway
    assert unlocked.unlocked and unlocked.cleaned_sessions == (), unlocked
    for unsupported in (
        adapter.reserve(cp, 1, "T", Decimal(1)),
        adapter.create_reservation(cp, 1, "T", Decimal(1)),
        adapter.session(started.session_id or ""),
    ):
        with pytest.raises(NotSupportedError):
            await unsupported
    await adapter.aclose()


async def test_the_api_wants_its_token(libcentral):
    async with httpx.AsyncClient(base_url=libcentral.api_url) as http:
        assert (await http.get("/health")).json()["name"] == "libcentral"
        assert (await http.get("/api/records")).status_code == 401
        wrong = await http.post("/api/call", json={}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await http.get("/api/records", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json()["connected"] == []
