"""OCPP 2.0.1: a two-EVSE station whose transaction events never name their EVSE.

EVerest's stations send `evse` in the first event after EV connect only (libocpp #580); some
send it in none. A car charges on EVSE 2 of a two-EVSE station whose TransactionEvents never say
`evse`; only the StatusNotification (Occupied on EVSE 2) says where. The CSMS must not guess
EVSE 1 (lbbrhzn/ocpp PR #2141 booked such events to connector 1) nor call both busy
(OCPP.Core issue #97): EVSE 1 stays free throughout, EVSE 2 is busy while the car charges and
free once it has left; the transaction is stored and closed with the station's readings.
"""

from scenarios.meta import scenario

CHARGE_S = 4.0


@scenario(
    code="EVL",
    purpose="2.0.1: events without `evse` on a two-EVSE station, car on EVSE 2 -> EVSE 1 free throughout, "
    "EVSE 2 busy then free, the transaction stored",
    seed="001 Common false positives (a connector busy that is not); OCPP.Core #97; lbbrhzn/ocpp #2141",
    quick_s=10,
    needs=("occupancy",),
    ocpp=("2.0.1",),
    quick_ocpp=("2.0.1",),
)
async def test_evse_less_events(fleet, oracle, csms):
    f = await fleet("no_evse=1", connectors=2)
    cp = f.ids[0]
    oracle.recovery_starts()  # nothing is wrong: every idle EVSE must be free throughout
    await f[cp].start_by_tag(2, "TAG0001")
    await oracle.wait(CHARGE_S)  # EVSE 2 charges, EVSE 1 idle
    await f[cp].unplug(2)
    await f[cp].flush()
    await oracle.wait(3.0)
    await oracle.judge(window=2.0)
