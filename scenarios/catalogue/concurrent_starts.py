"""Five people press start at once on one free connector; five pay for the one next to it at once.

Connector 1: five simultaneous app starts. Exactly one is accepted and charges; the
others are refused (ConnectorBusy by the CSMS, or RemoteStartRejected by the charger,
which holds the connector for the accepted one). Connector 2: five simultaneous paid
reservations. Exactly one wins; its charger accepts the start but the car never comes
(seed 001's lingering StartRequested reservation), so only the reservation holds the
connector: it must not be reported free while it does.
"""

from decimal import Decimal

import trio

from scenarios.adapters.base import Outcome
from scenarios.meta import scenario
from scenarios.run import NEVER_STARTED

TARIFF = Decimal("0.35")
N = 5


@scenario(
    code="RACE",
    purpose="5 simultaneous app starts and 5 simultaneous paid reservations on one connector: "
    "exactly one wins each, a held connector is never free",
    seed="000 Problem Statement: 'Charging gun is already in use'; 001 Payments/Create unique index, "
    "lingering reservation",
    quick_s=4,
    needs=("remote_start",),
)
async def test_concurrent_starts(fleet, oracle, csms):
    f = await fleet("accept_remote_start_never_start=1,connectors=2", connectors=2)
    cp = f.ids[0]

    starts = {}

    async def start(k: int) -> None:
        starts[k] = await csms.start(cp, 1, f"TAG{k:04d}", TARIFF)

    async with trio.open_nursery() as n:  # five app users, the same second
        for k in range(1, N + 1):
            n.start_soon(start, k)
    won = [r for r in starts.values() if r.accepted]
    refused = sorted(f"{r.status} {r.code}" for r in starts.values() if not r.accepted)
    oracle.note(f"{N} simultaneous app starts on connector 1: {len(won)} accepted, refused: {refused}")
    for r in won:
        oracle.session_tariff(r.session_id, TARIFF)
    await oracle.require(bool(won), f"all {N} simultaneous starts on a free connector were refused: {starts}", cp=cp)
    await oracle.until(
        lambda: f[cp].connector_truth(1).transaction_id is not None,
        10,
        "the winner's car to charge",
        blame=NEVER_STARTED,
        cp=cp,
        connector=1,
    )

    reservations = {}

    async def reserve(k: int) -> None:
        asked = oracle.now()
        r = reservations[k] = await csms.reserve(cp, 2, f"TAG{10 + k:04d}", TARIFF)
        if r.accepted:  # granted: from now on the connector is the payer's (busy since the ask is no fault)
            oracle.hold(cp, 2, oracle.now(), asked=asked)

    if oracle.profile.claims_all("reservations"):  # a CSMS without them is judged on the starts alone
        async with trio.open_nursery() as n:  # five payers, the same second
            for k in range(1, N + 1):
                n.start_soon(reserve, k)
    paid = [r for r in reservations.values() if r.accepted]
    turned_away = [r for r in reservations.values() if not r.accepted]
    oracle.note(  # (none asked of a CSMS whose profile claims no reservations)
        f"{N} simultaneous paid reservations on connector 2: {len(paid)} granted, refused: "
        f"{sorted({f'{r.status} {r.code} {list(r.reasons)}' for r in turned_away})}"
    )

    oracle.expect(len(won) == 1, f"{len(won)} of {N} simultaneous starts accepted, one must be: {starts}", cp=cp)
    oracle.expect(
        all(
            r.code in (Outcome.CONNECTOR_BUSY, Outcome.REMOTE_START_REJECTED) for r in starts.values() if not r.accepted
        ),
        f"a simultaneous start was refused for another reason than busy: {starts}",
        cp=cp,
        connector=1,
    )
    if oracle.profile.claims_all("reservations"):
        oracle.expect(
            len(paid) == 1,
            f"{len(paid)} of {N} simultaneous paid reservations granted, one must be: {reservations}",
            claim="reservations",
            cp=cp,
            connector=2,
        )
        oracle.expect(
            all(r.code == Outcome.CONNECTOR_BUSY for r in turned_away),
            f"a simultaneous reservation was refused for another reason than busy: {reservations}",
            claim="reservations",
            cp=cp,
            connector=2,
        )
    await oracle.wait(3.0)  # the payer's car never comes: only the reservation holds connector 2
    # Never free while a car charges (connector 1) or a granted reservation holds it (connector 2).
    await oracle.judge(window=2.0)
