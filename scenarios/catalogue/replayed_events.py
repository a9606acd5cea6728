"""OCPP 2.0.1: a station replays a transaction's events after its end (lbbrhzn/ocpp PR #2141).

A car charges and leaves; the station's Ended is acknowledged. Then the station sends the
transaction's Updated events again, marked `offline: true`, with their old seqNo and
timestamps, as a station does that replays its queue a second time after a reconnect; its
seqNo also skips numbers. Nothing about the transaction is new: the CSMS must not reopen it,
move its meter backwards, or call the idle connector busy.
"""

from scenarios.meta import scenario

CHARGE_S = 3.5  # s of charging: a few periodic samples to replay


@scenario(
    code="RPL",
    purpose="2.0.1: Updated events replayed after the Ended (offline: true, old seqNo, gaps) -> the "
    "transaction stays closed with the Ended's meter, the connector free",
    seed="001 Signals: open transactions; lbbrhzn/ocpp PR #2141",
    quick_s=10,
    needs=("occupancy", "transactions"),
    ocpp=("2.0.1",),
    quick_ocpp=("2.0.1",),
)
async def test_replayed_events(fleet, oracle, csms):
    f = await fleet("replay_after_end=1", "seq_no_gaps=1,every=2")
    cp = f.ids[0]
    await f[cp].start_by_tag(1, "TAG0001")
    await oracle.wait(CHARGE_S)
    await f[cp].unplug(1)  # the Ended, then the Updated events again
    await f[cp].flush()
    oracle.recovery_starts()
    oracle.note(f"ended and replayed by t={oracle.now():.1f}s")
    await oracle.wait(oracle.profile.orphan_grace + oracle.profile.sweep_interval + 3.0)
    for tx in await csms.transactions(oracle.prefix):
        oracle.note(f"transaction {tx.transaction_id}: closed={tx.closed} meterStop={tx.meter_stop}")
        oracle.expect(tx.closed, f"a replayed event reopened transaction {tx.transaction_id}", claim="transactions")
    # lost_stop if the stored meterStop moved from the Ended's; falsely_busy if the connector is called busy.
    await oracle.judge(window=2.0)
