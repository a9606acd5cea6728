"""`csms` with a known bug put back, for mutation tests: `python -m tests.support.mutants NAME[,NAME] -- serve ...`.

Each mutant replaces one named seam of the product wherever the product holds it (its module and
every `from x import y` binding, or only the modules of the path the bug lives on), then runs the
ordinary `csms` command line. The product carries no switch for any of
this: a suite proves it notices a bug by running one of these instead of `python -m csms`
(`unstuck-scenarios run --csms-command "python -m tests.support.mutants NAME --"`).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

MUTANTS: dict[str, str] = {
    "unlock_keeps_transaction": "unlock-connector force-ends sessions but leaves their OCPP transaction open",
    "registry_never_forgets": "a charge point whose WebSocket closed stays in the live registry (looks online)",
    "remote_accept_marks_busy": "an Accepted RemoteStartTransaction persists the connector status Occupied",
    "remote_start_marks_busy_first": "the seed's race after remote start: a remote start sets the connector Occupied "
    "(live and stored) before the charger answers, and a Rejected leaves it so",
    "late_stop_ignored": "a StopTransaction for a transaction the CSMS already closed (force-ended, orphaned) is "
    "acknowledged and dropped: the estimate stays instead of the charger's meterStop",
    "unlock_resets_live_status": "unlock-connector sets the connector's live status to Available (and resets the "
    "stored one) whatever the charger last reported",
    "reservation_not_busy": "an active payment reservation does not make its connector busy (the unique index "
    "still refuses a second one)",
    "pongs_not_liveness": "liveness counts OCPP messages only: a charger that keeps its WebSocket alive with "
    "pings and pongs but sends no Heartbeat is marked offline",
    "supersede_keeps_session": "a transaction superseded by the next car's StartTransaction is closed, but the "
    "app session billed to it stays open (Charging, unbilled)",
    "stop_acked_before_commit": "a StopTransaction is answered before its commit (queued, not awaited): a crash "
    "in between loses an acknowledged stop",
    "transaction_event_acked_before_commit": "an OCPP 2.0.1 TransactionEvent is answered before its commit (queued, "
    "not awaited): a crash in between loses acknowledged Started, Updated and Ended events",
    "queued_ended_dropped": "CitrineOS core PR #1053: GetTransactionStatus {ongoingIndicator: false, messagesInQueue: "
    "true} is read as inactive (the unlock force-ends it), and the queued Ended that follows is acknowledged and "
    "dropped",
    "replayed_events_reopen": "lbbrhzn/ocpp PR #2141: an Updated replayed after the Ended is applied as live: it "
    "reopens the transaction and its older reading becomes the meter",
    "evse_less_to_connector_1": "lbbrhzn/ocpp PR #2141: a TransactionEvent that names no EVSE is booked to connector 1",
}


def _unlock_keeps_transaction() -> None:
    from sqlalchemy import select

    from csms.db.models import ChargingSession, Transaction
    from csms.services import unlock

    force_end, release = unlock.force_end_session, unlock.release_connector

    def force_end_session(s: Any, session_id: str, **kw: Any) -> Any:
        tx_id = s.scalar(select(ChargingSession.transaction_id).where(ChargingSession.id == session_id))
        was_open = tx_id is not None and s.get(Transaction, tx_id).stop_time is None
        ended = force_end(s, session_id, **kw)
        if ended is not None and was_open:  # the seed's bug: the session ends, its transaction stays open
            tx = s.get(Transaction, tx_id)
            tx.stop_time = tx.stop_reason = tx.meter_stop = None
        return ended

    _rebind(force_end, force_end_session, unlock)
    _rebind(
        release,
        lambda s, cp_id, connector_id, plan, **kw: release(
            s, cp_id, connector_id, replace(plan, transactions=()), **kw
        ),
        unlock,
    )


def _registry_never_forgets() -> None:
    from csms import server

    server._forget = lambda ctx, live: False


def _remote_accept_marks_busy() -> None:
    from csms.db.models import ConnectorStatus
    from csms.services import sessions

    original = sessions.remote_start

    async def remote_start(ctx: Any, live: Any, session_id: str, connector_id: int, id_tag: str) -> None:
        await original(ctx, live, session_id, connector_id, id_tag)
        now: datetime = ctx.clock.now()

        def occupied(s: Any) -> None:  # the seed's bug: a mere accept stored as the connector's status
            row = s.get(ConnectorStatus, (live.id, connector_id))
            if row is None:
                s.add(
                    ConnectorStatus(
                        charge_point_id=live.id,
                        connector_id=connector_id,
                        status="Occupied",
                        error_code="NoError",
                        updated_at=now,
                    )
                )
            else:
                row.status, row.error_code, row.updated_at = "Occupied", "NoError", now

        await ctx.db.write(occupied)

    _rebind(original, remote_start)


def _remote_start_marks_busy_first() -> None:
    from csms.db.models import ConnectorStatus
    from csms.ocpp.registry import LiveConnector
    from csms.services import sessions

    original = sessions.remote_start

    async def remote_start(ctx: Any, live: Any, session_id: str, connector_id: int, *args: Any, **kw: Any) -> None:
        now: datetime = ctx.clock.now()
        live.connectors[connector_id] = LiveConnector("Occupied", "NoError", now)  # the seed's SetConnectorStatus

        def occupied(s: Any) -> None:
            row = s.get(ConnectorStatus, (live.id, connector_id))
            if row is None:
                s.add(
                    ConnectorStatus(
                        charge_point_id=live.id, connector_id=connector_id, status="Occupied", updated_at=now
                    )
                )
            else:
                row.status, row.updated_at = "Occupied", now

        await ctx.db.write(occupied)
        await original(ctx, live, session_id, connector_id, *args, **kw)  # its Rejected undoes none of it

    _rebind(original, remote_start)


def _late_stop_ignored() -> None:
    from csms.db import ocpp_store
    from csms.db.models import Transaction

    def late_stop(s: Any, tx_id: int, **_kw: Any) -> ocpp_store.StopResult:
        return ocpp_store.StopResult(
            known=True, reconciled=False, session_id=None, connector_id=s.get(Transaction, tx_id).connector_id
        )

    ocpp_store._late_stop = late_stop


def _unlock_resets_live_status() -> None:
    from csms.ocpp.registry import LiveConnector
    from csms.services import unlock

    original = unlock.unlock_connector

    async def unlock_connector(ctx: Any, station_id: str, connector_id: int, **kw: Any) -> Any:
        station = await unlock.active_station(ctx, station_id)
        live_cp = ctx.registry.get(station.charge_point_id)
        if live_cp is not None:  # the bug: the unlock overrides what the charger reported
            live_cp.connectors[connector_id] = LiveConnector("Available", "NoError", ctx.clock.now())
        return await original(ctx, station_id, connector_id, **kw)

    _rebind(original, unlock_connector)


def _reservation_not_busy() -> None:
    from csms.services import occupancy

    original = occupancy.decide
    _rebind(original, lambda signals, **kw: original(replace(signals, reservations=()), **kw), occupancy)


def _pongs_not_liveness() -> None:
    from csms import server
    from csms.services import maintenance

    server._on_every_frame = lambda ws, seen: False
    maintenance._seen_by_pong = lambda live, now: None


def _supersede_keeps_session() -> None:
    from csms.db import ocpp_store

    original = ocpp_store.close_transaction_estimated

    def close(s: Any, tx: Any, *, reason: str, **kw: Any) -> Any:
        if reason == "Superseded":
            kw["with_session"] = False
        return original(s, tx, reason=reason, **kw)

    ocpp_store.close_transaction_estimated = close  # read by start_transaction, in its own module


def _stop_acked_before_commit() -> None:
    from ocpp.routing import on

    from csms.core.times import parse_iso
    from csms.db import ocpp_store
    from csms.ocpp.handlers import ChargePointHandlers

    @on("StopTransaction")
    async def on_stop_transaction(
        self: Any, meter_stop: int, timestamp: str, transaction_id: int, **kw: Any
    ) -> dict[str, Any]:
        now = self.ctx.clock.now()
        self.ctx.db.submit(
            lambda s: ocpp_store.stop_transaction(  # queued, not awaited: answered before stored
                s,
                transaction_id,
                cp_id=self.cp_id,
                meter_stop=meter_stop,
                stop_time=parse_iso(timestamp) or now,
                reason=kw.get("reason"),
                now=now,
            )
        )
        return {"idTagInfo": {"status": "Accepted"}} if kw.get("id_tag") else {}

    ChargePointHandlers.on_stop_transaction = on_stop_transaction


def _transaction_event_acked_before_commit() -> None:
    import contextvars

    from ocpp.routing import on

    from csms.core.transaction_events import Step
    from csms.db import event_store
    from csms.db.database import Database
    from csms.ocpp.handlers201 import ChargePointHandlers201

    in_event = contextvars.ContextVar("in_transaction_event", default=False)
    write, handler = Database.write, ChargePointHandlers201.on_transaction_event

    async def write_or_queue(db: Any, fn: Any) -> Any:
        if not in_event.get():
            return await write(db, fn)
        db.submit(fn)  # queued, not awaited: answered before stored
        return event_store.EventResult(Step.UPDATE, None, None), None  # as the handler reads it: no idTokenInfo

    @on("TransactionEvent")
    async def on_transaction_event(self: Any, **kw: Any) -> Any:
        token = in_event.set(True)
        try:
            return await handler(self, **kw)
        finally:
            in_event.reset(token)

    Database.write = write_or_queue
    ChargePointHandlers201.on_transaction_event = on_transaction_event


def _queued_ended_dropped() -> None:
    from csms.core import transaction_events
    from csms.core.transaction_events import Step
    from csms.services import unlock

    ask = unlock._ask_station

    async def ask_station(ctx: Any, cp_id: str, transaction_ids: list[int]) -> dict[int, str]:
        said = await ask(ctx, cp_id, transaction_ids)
        return {k: v for k, v in said.items() if v.startswith("ongoing")}  # queued messages do not count

    plan = transaction_events.plan

    def plan_dropping(event_type: str, timestamp: Any, stored: Any) -> Step:
        step = plan(event_type, timestamp, stored)
        return Step.DUPLICATE if step is Step.RECONCILE else step  # the late Ended: acknowledged, dropped

    _rebind(ask, ask_station, unlock)
    _rebind(plan, plan_dropping)


def _replayed_events_reopen() -> None:
    from csms.core.transaction_events import UPDATED, Step
    from csms.db import event_store
    from csms.db.models import Transaction

    apply = event_store.apply_event

    def apply_event(s: Any, cp_id: str, e: Any, **kw: Any) -> Any:
        result = apply(s, cp_id, e, **kw)
        if result.step is Step.AFTER_END and e.event_type == UPDATED and result.transaction_id is not None:
            tx = s.get(Transaction, result.transaction_id)  # applied as live: open again, its meter this reading
            tx.stop_time = tx.stop_reason = tx.meter_stop = None
            if e.latest_wh is not None:
                tx.latest_meter_wh, tx.latest_meter_at = e.latest_wh, e.latest_at
        return result

    _rebind(apply, apply_event)


def _evse_less_to_connector_1() -> None:
    from csms.ocpp.handlers201 import ChargePointHandlers201

    ChargePointHandlers201._only_evse = lambda self: 1


def _rebind(original: Any, replacement: Any, *only: Any) -> None:
    """Put `replacement` wherever the product holds `original` (its own module and every `from x import y`
    binding), or only in the modules given: a mutant must not depend on which module was imported first."""
    import csms.server  # noqa: F401 - every product module, imported before its bindings are looked at

    modules = only or [m for name, m in list(sys.modules.items()) if name.split(".")[0] == "csms" and m is not None]
    for module in modules:
        for attr, value in list(vars(module).items()):
            if value is original:
                setattr(module, attr, replacement)


PATCHES: dict[str, Callable[[], None]] = {
    "unlock_keeps_transaction": _unlock_keeps_transaction,
    "registry_never_forgets": _registry_never_forgets,
    "remote_accept_marks_busy": _remote_accept_marks_busy,
    "remote_start_marks_busy_first": _remote_start_marks_busy_first,
    "late_stop_ignored": _late_stop_ignored,
    "unlock_resets_live_status": _unlock_resets_live_status,
    "reservation_not_busy": _reservation_not_busy,
    "pongs_not_liveness": _pongs_not_liveness,
    "supersede_keeps_session": _supersede_keeps_session,
    "stop_acked_before_commit": _stop_acked_before_commit,
    "transaction_event_acked_before_commit": _transaction_event_acked_before_commit,
    "queued_ended_dropped": _queued_ended_dropped,
    "replayed_events_reopen": _replayed_events_reopen,
    "evse_less_to_connector_1": _evse_less_to_connector_1,
}
assert PATCHES.keys() == MUTANTS.keys()


def command(*names: str) -> list[str]:
    """The command that starts `csms` with these mutants: give it the usual `csms` arguments after it."""
    return [sys.executable, "-m", "tests.support.mutants", ",".join(names), "--"]


def scenario_flags(csms_args: Iterable[str]) -> list[str]:
    """`unstuck-scenarios run` flags for a CSMS started with these arguments, where an entry `mutant=NAME`
    picks a mutant (`--csms-command`) and every other one is a `--csms-arg`."""
    args = list(csms_args)
    names = [a.partition("=")[2] for a in args if a.startswith("mutant=")]
    flags = [f"--csms-arg={a}" for a in args if not a.startswith("mutant=")]
    return flags + ([f"--csms-command={shlex.join(command(*names))}"] if names else [])


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] != "--":
        sys.exit(
            "usage: python -m tests.support.mutants NAME[,NAME] -- serve [csms serve arguments]\n"
            f"mutants: {', '.join(sorted(MUTANTS))}"
        )
    names = [n for n in argv[0].split(",") if n]
    unknown = sorted(set(names) - MUTANTS.keys())
    if unknown:
        sys.exit(f"unknown mutant {', '.join(unknown)}; known: {', '.join(sorted(MUTANTS))}")
    for name in names:
        PATCHES[name]()
    from csms.cli import main as csms_main

    print(f"mutant.on names={','.join(names)} (known bugs put back for a mutation test)", file=sys.stderr, flush=True)
    sys.exit(csms_main(argv[2:]))


if __name__ == "__main__":
    main(sys.argv[1:])
