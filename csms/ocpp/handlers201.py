"""OCPP 2.0.1 handlers for calls a charging station sends to the CSMS.

The same thin shape as the 1.6 handlers (csms/ocpp/handlers.py), writing through the same stores,
so occupancy, unlock, maintenance, billing and the REST API see one kind of charger. Where 2.0.1
differs: connectors are EVSEs (our connector N is EVSE N: one car at a time per EVSE, whatever
connectors it has), transactions are the station's (csms/db/event_store.py), and the id token
comes with a type.
"""

from __future__ import annotations

import logging
from typing import Any

from ocpp.routing import on

from csms.core import meter_samples, metering
from csms.core.id_tags import IdTagInfo
from csms.core.times import parse_iso
from csms.core.transaction_events import ENDED, STARTED, STATUS_OF_CHARGING_STATE, Step
from csms.db import event_store
from csms.db.hotpath import judge_id_tag
from csms.ocpp.handlers import HandlerBase
from ocppj import OcppCallError

__all__ = ["ChargePointHandlers201"]

log = logging.getLogger("csms.ocpp")

_BEGIN = frozenset({"Transaction.Begin"})
_END = frozenset({"Transaction.End"})


class ChargePointHandlers201(HandlerBase):
    """OCPP 2.0.1: the calls a charging station sends (the shared checks and boot bookkeeping are HandlerBase's)."""

    def _id_token_info(self, message: str, id_tag: str, info: IdTagInfo, **where: Any) -> dict[str, Any]:
        self._id_tag_answer(message, id_tag, info, **where)
        out: dict[str, Any] = {"status": info.status.value}  # 1.6's five statuses are 2.0.1 ones too
        payload = info.payload()
        if payload.get("expiryDate"):
            out["cacheExpiryDateTime"] = payload["expiryDate"]
        if payload.get("parentIdTag"):
            out["groupIdToken"] = {"idToken": payload["parentIdTag"], "type": "Central"}
        return out

    @on("BootNotification")
    async def on_boot_notification_201(self, charging_station: dict[str, Any], reason: str, **kw: Any):
        answer = await self._boot(
            charging_station.get("vendor_name", ""),
            charging_station.get("model", ""),
            {
                "charge_point_serial_number": charging_station.get("serial_number"),
                "firmware_version": charging_station.get("firmware_version"),
            },
            "2.0.1",
        )
        log.info("charge_point.boot_reason charge_point=%s reason=%s", self.cp_id, reason)
        return answer

    @on("Heartbeat")
    def on_heartbeat_201(self):
        return self._heartbeat()

    @on("StatusNotification")
    def on_status_notification_201(self, timestamp: str, connector_status: str, evse_id: int, connector_id: int, **_):
        # One car at a time per EVSE: the EVSE is our connector (its connectors share it).
        return self._status(evse_id, "NoError", connector_status, evseId=evse_id, connectorId=connector_id)

    @on("Authorize")
    async def on_authorize_201(self, id_token: dict[str, Any], **_kw: Any):
        self._require_accepted("Authorize")
        ctx, now = self.ctx, self.ctx.clock.now()
        tag = id_token.get("id_token", "")
        info = await ctx.db.read_grouped(
            lambda s: judge_id_tag(s, tag, now=now, accept_unknown=ctx.settings.accept_unknown_id_tags)
        )
        return {"idTokenInfo": self._id_token_info("Authorize", tag, info)}

    @on("MeterValues")
    def on_meter_values_201(self, evse_id: int, meter_value: list[dict], **_kw: Any):
        self._require_accepted("MeterValues")
        self._check_connectors("MeterValues", evseId=evse_id)
        if self.live is not None:
            self.live.meter_seen[evse_id] = self.ctx.clock.now()
        return {}  # outside a transaction: nothing to bill

    @on("TransactionEvent")
    async def on_transaction_event(
        self,
        event_type: str,
        timestamp: str,
        trigger_reason: str,
        seq_no: int,
        transaction_info: dict[str, Any],
        **kw: Any,
    ):
        self._require_accepted("TransactionEvent")
        evse = kw.get("evse") or {}
        self._check_connectors(
            "TransactionEvent", **{"evse.id": evse.get("id"), "evse.connectorId": evse.get("connector_id")}
        )
        ctx, now = self.ctx, self.ctx.clock.now()
        at = parse_iso(timestamp) or now
        station_tx = transaction_info["transaction_id"]
        tag = (kw.get("id_token") or {}).get("id_token")
        remote = transaction_info.get("remote_start_id")
        if tag is None and remote is not None and self.live is not None and remote in self.live.remote_starts:
            tag = self.live.remote_starts[remote][1]  # started from the app: the tag the app session waits with
        samples = _camel(kw.get("meter_value") or [])
        latest = metering.latest_energy_register(samples)
        begin, end = metering.latest_energy_register(samples, _BEGIN), metering.latest_energy_register(samples, _END)
        for reading in (latest, begin, end):
            if reading is not None:
                _check_register(reading.wh)
        event = event_store.Event(
            event_type=event_type,
            station_tx_id=station_tx,
            seq_no=seq_no,
            timestamp=at,
            evse_id=evse.get("id"),
            id_tag=tag,
            begin_wh=None if begin is None else begin.wh,
            end_wh=None if end is None else end.wh,
            latest_wh=None if latest is None else latest.wh,
            latest_at=None if latest is None else (latest.at or at),
            stopped_reason=transaction_info.get("stopped_reason"),
            latest_w=None if latest is None else meter_samples.power_w(samples, latest.at),
        )
        fallback = self._only_evse()

        def work(s):
            result = event_store.apply_event(
                s,
                self.cp_id,
                event,
                now=now,
                fallback_connector=fallback,
                revive_within=ctx.settings.revive_within(),
                settle_delay=ctx.settings.estimate_settle(),
                sample_every=ctx.settings.meter_sample_every(),
            )
            info = None
            if tag is not None and event_type != ENDED:
                info = judge_id_tag(
                    s,
                    tag,
                    now=now,
                    accept_unknown=ctx.settings.accept_unknown_id_tags,
                    starting=result.transaction_id if result.step is Step.START else None,
                    check_concurrent=result.step is Step.START,
                )
            return result, info

        connector = event.evse_id if event.evse_id is not None else fallback
        if self.live is None or event_type != STARTED:
            result, info = await ctx.db.write(work)
        else:
            with self.live.starting(connector):  # a car is starting there: not free while it is stored
                result, info = await ctx.db.write(work)
        self._after_event(result, event, kw, transaction_info, trigger_reason, bool(kw.get("offline")))
        if info is None:
            return {}
        return {"idTokenInfo": self._id_token_info("TransactionEvent", tag or "", info, transaction=station_tx)}

    def _only_evse(self) -> int:
        """Where a transaction whose events never name an EVSE goes: the station's only EVSE (else 0)."""
        known = sorted(self.live.connectors) if self.live is not None else []
        known = [c for c in known if c > 0]
        return known[0] if len(known) == 1 else 0

    def _after_event(
        self,
        result: event_store.EventResult,
        event: event_store.Event,
        kw: dict[str, Any],
        info: dict[str, Any],
        trigger: str,
        offline: bool,
    ) -> None:
        ctx, now, live = self.ctx, self.ctx.clock.now(), self.live
        tx_id, connector = result.transaction_id, result.connector_id
        applied = result.step in (Step.START, Step.START_AND_END, Step.UPDATE, Step.END, Step.RECONCILE)
        if tx_id is not None:
            ctx.transaction_owners[tx_id] = self.cp_id
            if live is not None and result.stopped is None and result.step in (Step.START, Step.UPDATE):
                live.station_tx[tx_id] = event.station_tx_id  # its open transactions only (published in presence)
            elif live is not None and result.stopped is not None:
                live.station_tx.pop(tx_id, None)
        if live is not None and connector is not None:
            if event.latest_wh is not None and applied:  # a replay after the end is no sign of life on the EVSE
                live.meter_seen[connector] = now
            state = info.get("charging_state")
            if state in STATUS_OF_CHARGING_STATE and result.step in (Step.START, Step.UPDATE) and not offline:
                live.status_received(connector, STATUS_OF_CHARGING_STATE[state], "NoError", now, transaction_id=tx_id)
            if result.stopped is not None:
                live.stops_seen[connector] = now
        if result.started is not None and result.started.superseded:
            ctx.nudge_payment_cancels()
        if result.stopped is not None and result.stopped.session_id is not None:
            ctx.nudge_payment_cancels()
        log.info(
            "transaction.event charge_point=%s station_transaction=%s event=%s seq_no=%s trigger=%s offline=%s "
            "step=%s transaction=%s connector=%s%s",
            self.cp_id,
            event.station_tx_id,
            event.event_type,
            event.seq_no,
            trigger,
            offline,
            result.step.value,
            tx_id,
            connector,
            "" if result.stopped is None else f" energy_wh={result.stopped.energy_wh} fee={result.stopped.fee}",
        )

    # Notifications a site reads in its logs; acknowledged, nothing stored.
    @on("NotifyEvent")
    def on_notify_event(self, generated_at: str, seq_no: int, event_data: list[dict[str, Any]], **_kw: Any):
        for e in event_data[:20]:
            log.info(
                "station.event charge_point=%s component=%s variable=%s trigger=%s value=%r",
                self.cp_id,
                (e.get("component") or {}).get("name"),
                (e.get("variable") or {}).get("name"),
                e.get("trigger"),
                str(e.get("actual_value"))[:100],
            )
        return {}

    @on("SecurityEventNotification")
    def on_security_event(self, type: str, timestamp: str, **_kw: Any):
        log.warning("station.security_event charge_point=%s type=%s", self.cp_id, type)
        return {}

    @on("FirmwareStatusNotification")
    def on_firmware_status_201(self, status: str, **_kw: Any):
        log.info("firmware.status charge_point=%s status=%s", self.cp_id, status)
        return {}

    @on("LogStatusNotification")
    def on_log_status(self, status: str, **_kw: Any):
        log.info("log.status charge_point=%s status=%s", self.cp_id, status)
        return {}

    @on("NotifyReport")
    def on_notify_report(self, request_id: int, generated_at: str, seq_no: int, **_kw: Any):
        log.info("station.report charge_point=%s request=%s seq_no=%s", self.cp_id, request_id, seq_no)
        return {}

    @on("DataTransfer")
    def on_data_transfer_201(self, vendor_id: str, **kw: Any):
        log.info("data_transfer charge_point=%s vendor=%s message_id=%s", self.cp_id, vendor_id, kw.get("message_id"))
        return {"status": "UnknownVendorId"}


def _check_register(wh: int) -> None:
    try:
        metering.check_register_wh(wh, "meterValue")
    except metering.ImplausibleReadingError as exc:
        raise OcppCallError("PropertyConstraintViolation", str(exc)) from None


def _camel(meter_value: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The routing layer hands us snake_case; metering reads the wire's camelCase names."""
    out = []
    for entry in meter_value:
        values = []
        for v in entry.get("sampled_value", []):
            uom = v.get("unit_of_measure") or {}
            values.append(
                {
                    "value": v.get("value"),
                    "context": v.get("context"),
                    "measurand": v.get("measurand"),
                    "phase": v.get("phase"),
                    "unitOfMeasure": {"unit": uom.get("unit", "Wh"), "multiplier": uom.get("multiplier", 0)},
                }
            )
        out.append({"timestamp": entry.get("timestamp"), "sampledValue": values})
    return out
