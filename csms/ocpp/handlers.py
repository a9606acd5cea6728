"""OCPP 1.6 handlers for calls a charge point sends to the CSMS.

Thin: each updates the live registry, hands a unit of work to the database
writer, and answers. StartTransaction and StopTransaction wait for their
commit; status, meter samples and last-seen times are queued (latest wins).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from ocpp.routing import on

from csms.context import Context
from csms.core import meter_samples, metering
from csms.core.connector_limit import CODE as CONNECTOR_LIMIT_CODE
from csms.core.connector_limit import connector_problem
from csms.core.id_tags import IdTagInfo
from csms.core.times import iso, parse_iso
from csms.db import meter_sample_store, ocpp_store
from csms.db.cleanup_store import audit
from csms.db.credential_store import AUTO_REGISTERED
from csms.db.hotpath import judge_id_tag
from csms.metrics import BOOTS_REJECTED, CALLS_NOT_ACCEPTED, ID_TAG_ANSWERS, LATE_STOPS, OCPP_LIMITS
from csms.ocpp.registry import LiveChargePoint
from ocppj import OcppCallError

__all__ = ["HandlerBase", "ChargePointHandlers"]

log = logging.getLogger("csms.ocpp")
_ACCEPTED = {"idTagInfo": {"status": "Accepted"}}


class HandlerBase:
    """What every version's handlers share, and no routes: one instance per connection; `live` is the
    registry entry of that connection."""

    def __init__(self, ctx: Context, cp_id: str) -> None:
        self.ctx = ctx
        self.cp_id = cp_id
        self.live: LiveChargePoint | None = None
        # Transaction id -> its last sample kept for the chart on this connection (csms.core.meter_samples).
        self.samples_kept: dict[int, datetime] = {}

    def _require_accepted(self, action: str) -> None:
        """OCPP 1.6 §4.2: until a BootNotification is Accepted a charge point SHALL NOT send other
        requests. A charge point never accepted (on this connection or before) gets CallError
        SecurityError, which is what OCPP 2.0.1's boot use cases (B02/B03) prescribe for a station
        that is not Accepted; Heartbeat alone is let through, it changes nothing."""
        if self.cp_id not in self.ctx.accepted_charge_points:
            CALLS_NOT_ACCEPTED.labels(action).inc()
            raise OcppCallError(
                "SecurityError",
                f"{action} refused: this charge point has no accepted BootNotification; send BootNotification first",
            )

    def _check_connectors(self, action: str, **ids: int | None) -> None:
        """Refuse connector or EVSE ids beyond the site's bound before anything about them is kept: each one
        named costs memory, a row and a tile on the board (csms.core.connector_limit)."""
        problem = connector_problem(self.ctx.settings.max_connectors_per_charger, **ids)
        if problem is not None:
            OCPP_LIMITS.labels("connector_out_of_range").inc()
            raise OcppCallError(CONNECTOR_LIMIT_CODE, f"{action} refused: {problem}")

    def _id_tag_answer(self, message: str, id_tag: str, info: IdTagInfo, **where: Any) -> dict[str, Any]:
        ID_TAG_ANSWERS.labels(message, info.status.value).inc()
        if not info.accepted:
            extra = "".join(f" {k}={v}" for k, v in where.items())
            log.warning(
                "id_tag.not_accepted message=%s charge_point=%s id_tag=%s status=%s%s",
                message,
                self.cp_id,
                id_tag,
                info.status.value,
                extra,
            )
        return info.payload()

    async def _boot(self, vendor: str, model: str, kw: dict[str, Any], version: str) -> dict[str, Any]:
        charge_point_vendor, charge_point_model = vendor, model
        ctx, now = self.ctx, self.ctx.clock.now()
        known = self.cp_id in ctx.known_charge_points
        if not known and (
            not ctx.settings.allow_unknown_chargers or ctx.auto_registered >= ctx.settings.max_auto_registered
        ):
            # Lab mode's bound (the handshake holds a slot for each unknown id it admits, so this
            # is only a race's last line): not registered, and Rejected, so it cannot charge.
            BOOTS_REJECTED.labels("auto_register_limit").inc()
            log.warning(
                "charge_point.boot_rejected charge_point=%s (lab mode registered --max-auto-registered=%d "
                "charge points already)",
                self.cp_id,
                ctx.settings.max_auto_registered,
            )
            return {"status": "Rejected", "currentTime": iso(now), "interval": ctx.settings.heartbeat_interval}
        work = _boot_work(
            self.cp_id, charge_point_vendor, charge_point_model, kw, now, register=not known, version=version
        )
        if known:
            ctx.db.submit(work)
        else:
            if await ctx.db.write(work):
                ctx.auto_registered += 1
                log.info(
                    "charge_point.registered charge_point=%s vendor=%s model=%s (lab mode, %d of at most %d)",
                    self.cp_id,
                    charge_point_vendor,
                    charge_point_model,
                    ctx.auto_registered,
                    ctx.settings.max_auto_registered,
                )
            ctx.known_charge_points.add(self.cp_id)
            ctx.pending_registrations.discard(self.cp_id)
        ctx.accepted_charge_points.add(self.cp_id)
        if self.live is not None:
            self.live.booted_at = now
            self.live.heartbeat_interval = ctx.settings.heartbeat_interval
        log.info("charge_point.booted charge_point=%s ocpp=%s", self.cp_id, version)
        return {"status": "Accepted", "currentTime": iso(now), "interval": ctx.settings.heartbeat_interval}

    def _heartbeat(self) -> dict[str, Any]:
        now = self.ctx.clock.now()
        self.ctx.db.submit_latest(("seen", self.cp_id), ocpp_store.touch_seen(self.cp_id, now))
        return {"currentTime": iso(now)}

    def _status(self, connector_id: int, error_code: str, status: str, **named: int | None) -> dict[str, Any]:
        """Keep a connector's status; `named` are the message's connector and EVSE ids, checked against the bound."""
        self._require_accepted("StatusNotification")
        self._check_connectors("StatusNotification", **named)
        now = self.ctx.clock.now()
        if self.live is not None:
            self.live.status_received(connector_id, status, error_code, now)
        self.ctx.db.submit_latest(
            ("status", self.cp_id, connector_id),
            ocpp_store.upsert_status(self.cp_id, connector_id, status, error_code, now),
        )
        return {}


class ChargePointHandlers(HandlerBase):
    """OCPP 1.6: the calls a charge point sends."""

    @on("BootNotification")
    async def on_boot_notification(self, charge_point_vendor: str, charge_point_model: str, **kw: Any):
        return await self._boot(charge_point_vendor, charge_point_model, kw, "1.6")

    @on("Heartbeat")
    def on_heartbeat(self):
        return self._heartbeat()

    @on("StatusNotification")
    def on_status_notification(self, connector_id: int, error_code: str, status: str, **_kw: Any):
        return self._status(connector_id, error_code, status, connectorId=connector_id)

    @on("Authorize")
    async def on_authorize(self, id_tag: str):
        self._require_accepted("Authorize")
        ctx, now = self.ctx, self.ctx.clock.now()
        info = await ctx.db.read_grouped(
            lambda s: judge_id_tag(s, id_tag, now=now, accept_unknown=ctx.settings.accept_unknown_id_tags)
        )
        return {"idTagInfo": self._id_tag_answer("Authorize", id_tag, info)}

    @on("StartTransaction")
    async def on_start_transaction(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **_kw: Any):
        self._require_accepted("StartTransaction")
        self._check_connectors("StartTransaction", connectorId=connector_id)
        ctx, now = self.ctx, self.ctx.clock.now()
        start_time = parse_iso(timestamp) or now
        _check_register(meter_start, "meterStart")  # nothing is stored for a reading no meter shows
        revive = self.ctx.settings.revive_within()

        def work(s):
            # The transaction is stored whatever the tag's answer: an OCPP 1.6 charge point stops a
            # transaction whose idTagInfo is not Accepted (configuration key StopTransactionOnInvalidId)
            # with a StopTransaction that names this transactionId. Judged in the same unit of work, so two
            # starts with one tag at once cannot both pass the ConcurrentTx check.
            started = ocpp_store.start_transaction(
                s,
                self.cp_id,
                connector_id,
                id_tag,
                meter_start,
                start_time,
                now,
                revive_within=revive,
                settle_delay=ctx.settings.estimate_settle(),
            )
            info = judge_id_tag(
                s,
                id_tag,
                now=now,
                accept_unknown=ctx.settings.accept_unknown_id_tags,
                starting=started.transaction_id,
                check_concurrent=True,
            )
            return started, info

        if self.live is None:
            result, info = await ctx.db.write(work)
        else:
            with self.live.starting(connector_id):
                result, info = await ctx.db.write(work)
        id_tag_info = self._id_tag_answer(
            "StartTransaction", id_tag, info, connector=connector_id, transaction=result.transaction_id
        )
        if result.repeated:
            log.warning(
                "transaction.start_repeated charge_point=%s connector=%s transaction=%s "
                "(same StartTransaction again; answered with the same id)",
                self.cp_id,
                connector_id,
                result.transaction_id,
            )
            return {"transactionId": result.transaction_id, "idTagInfo": id_tag_info}
        for old in result.superseded:
            log.warning(
                "transaction.superseded charge_point=%s connector=%s transaction=%s by=%s",
                self.cp_id,
                connector_id,
                old,
                result.transaction_id,
            )
        if result.superseded:
            ctx.nudge_payment_cancels()  # a superseded paid session's capture is due
        self.ctx.transaction_owners[result.transaction_id] = self.cp_id
        if result.revived or result.carried:
            log.warning(
                "session.%s charge_point=%s connector=%s transaction=%s session=%s review=%r",
                "revived" if result.revived else "carried_over",
                self.cp_id,
                connector_id,
                result.transaction_id,
                result.session_id,
                result.review,
            )
        log.info(
            "transaction.started charge_point=%s connector=%s transaction=%s id_tag=%s session=%s",
            self.cp_id,
            connector_id,
            result.transaction_id,
            id_tag,
            result.session_id,
        )
        return {"transactionId": result.transaction_id, "idTagInfo": id_tag_info}

    @on("StopTransaction")
    async def on_stop_transaction(self, meter_stop: int, timestamp: str, transaction_id: int, **kw: Any):
        self._require_accepted("StopTransaction")
        ctx = self.ctx
        self.samples_kept.pop(transaction_id, None)
        now = self.ctx.clock.now()
        stop_time = parse_iso(timestamp) or now
        reason = kw.get("reason")
        try:
            metering.check_register_wh(meter_stop, "meterStop")
        except metering.ImplausibleReadingError as exc:
            await _close_invalid_stop(self, transaction_id, meter_stop, exc)
        id_tag = kw.get("id_tag")

        def work(s):
            stopped = ocpp_store.stop_transaction(
                s, transaction_id, cp_id=self.cp_id, meter_stop=meter_stop, stop_time=stop_time, reason=reason, now=now
            )
            info = (
                None
                if id_tag is None
                else judge_id_tag(s, id_tag, now=now, accept_unknown=ctx.settings.accept_unknown_id_tags)
            )
            return stopped, info

        result, info = await self.ctx.db.write(work)
        if result.session_id is not None:
            ctx.nudge_payment_cancels()  # a paid session's capture is due
        if self.live is not None and result.connector_id is not None:
            self.live.stops_seen[result.connector_id] = now  # the contradicted-status rule waits a grace from here
        if result.review is not None:
            log.warning(
                "session.review charge_point=%s transaction=%s session=%s energy_wh=%s why=%r",
                self.cp_id,
                transaction_id,
                result.session_id,
                result.energy_wh,
                result.review,
            )
        if result.skewed:
            log.warning(
                "transaction.clock_skew charge_point=%s transaction=%s stamped=%s (before its start: "
                "stored with the time it arrived)",
                self.cp_id,
                transaction_id,
                timestamp,
            )
        if not result.known:
            log.warning(
                "transaction.stop_unknown charge_point=%s transaction=%s (accepted, nothing to close)",
                self.cp_id,
                transaction_id,
            )
        elif result.reconciled:
            LATE_STOPS.inc()
            log.info(
                "transaction.reconciled charge_point=%s transaction=%s session=%s energy_wh=%s fee=%s",
                self.cp_id,
                transaction_id,
                result.session_id,
                result.energy_wh,
                result.fee,
            )
        else:
            log.info(
                "transaction.stopped charge_point=%s transaction=%s reason=%s session=%s energy_wh=%s fee=%s",
                self.cp_id,
                transaction_id,
                reason,
                result.session_id,
                result.energy_wh,
                result.fee,
            )
        if info is None:
            return _ACCEPTED  # stopped without a tag (EV unplugged, remote stop): nothing to judge
        assert id_tag is not None  # info was judged from it
        # The transaction is closed either way (the energy was delivered); the answer tells the
        # charge point what the tag that stopped it is worth now.
        return {"idTagInfo": self._id_tag_answer("StopTransaction", id_tag, info, transaction=transaction_id)}

    @on("MeterValues")
    def on_meter_values(self, connector_id: int, meter_value: list[dict], transaction_id: int | None = None):
        self._require_accepted("MeterValues")
        self._check_connectors("MeterValues", connectorId=connector_id)
        now = self.ctx.clock.now()
        if self.live is not None:
            self.live.meter_seen[connector_id] = now
        if transaction_id is None:
            return {}
        entries = _camel_meter_values(meter_value)
        reading = metering.latest_energy_register(entries)
        if reading is None:
            return {}
        owner = self.ctx.transaction_owners.get(transaction_id)
        if owner is not None and owner != self.cp_id:
            # Another charge point's transaction: dropped here, so it can never displace the owner's
            # own queued sample (nor reach the database, which would refuse it anyway).
            log.warning(
                "meter.foreign charge_point=%s transaction=%s owner=%s (ignored)", self.cp_id, transaction_id, owner
            )
            return {}
        at = reading.at or now  # the sample's own time orders samples; a buffered older one never wins
        self.ctx.db.submit_latest(
            ("meter", self.cp_id, transaction_id),
            ocpp_store.record_meter_sample(self.cp_id, transaction_id, reading.wh, at, now),
            order=at,
        )
        every = self.ctx.settings.meter_sample_every()
        if meter_samples.keep_sample(self.samples_kept.get(transaction_id), at, every):
            meter_samples.remember(self.samples_kept, transaction_id, at)
            w = meter_samples.power_w(entries, reading.at)
            self.ctx.db.submit_latest(
                (meter_sample_store.KIND, self.cp_id, transaction_id),
                meter_sample_store.record_sample(self.cp_id, transaction_id, at, reading.wh, w, every),
                order=at,
            )
        return {}

    @on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, **kw: Any):
        self._require_accepted("DataTransfer")
        log.info("data_transfer charge_point=%s vendor=%s message_id=%s", self.cp_id, vendor_id, kw.get("message_id"))
        return {"status": "UnknownVendorId"}

    @on("FirmwareStatusNotification")
    def on_firmware_status(self, status: str):
        self._require_accepted("FirmwareStatusNotification")
        log.info("firmware.status charge_point=%s status=%s", self.cp_id, status)
        return {}

    @on("DiagnosticsStatusNotification")
    def on_diagnostics_status(self, status: str):
        self._require_accepted("DiagnosticsStatusNotification")
        log.info("diagnostics.status charge_point=%s status=%s", self.cp_id, status)
        return {}


async def _close_invalid_stop(
    h: ChargePointHandlers, transaction_id: int, meter_stop: int, exc: metering.ImplausibleReadingError
) -> None:
    """A meterStop no meter shows: the transaction is closed with its last good reading (billed, audited),
    and the charger is told why with a CallError, not an InternalError it would retry for ever."""
    now = h.ctx.clock.now()
    closed = await h.ctx.db.write(
        lambda s: ocpp_store.close_transaction_invalid_stop(
            s,
            transaction_id,
            cp_id=h.cp_id,
            meter_stop=meter_stop,
            now=now,
            settle_delay=h.ctx.settings.estimate_settle(),
        )
    )
    log.warning(
        "transaction.invalid_meter_stop charge_point=%s transaction=%s meter_stop=%s closed=%s",
        h.cp_id,
        transaction_id,
        meter_stop,
        closed,
    )
    raise OcppCallError(
        "PropertyConstraintViolation",
        f"{exc}; transaction {transaction_id} "
        + ("was closed with its last good reading" if closed else "is not open here"),
    )


def _check_register(value: int, name: str) -> None:
    try:
        metering.check_register_wh(value, name)
    except metering.ImplausibleReadingError as exc:
        raise OcppCallError("PropertyConstraintViolation", str(exc)) from None


def _boot_work(cp_id: str, vendor: str, model: str, kw: dict[str, Any], now, *, register: bool, version: str):
    def work(s):
        created = ocpp_store.record_boot(
            s,
            cp_id,
            vendor=vendor,
            model=model,
            serial=kw.get("charge_point_serial_number") or kw.get("charge_box_serial_number"),
            firmware=kw.get("firmware_version"),
            now=now,
            register=register,
            version=version,
        )
        if created:  # counted against --max-auto-registered, across restarts
            audit(
                s,
                actor="system:lab-mode",
                action=AUTO_REGISTERED,
                at=now,
                charge_point_id=cp_id,
                vendor=vendor,
                model=model,
            )
        return created

    return work


def _camel_meter_values(meter_value: list[dict]) -> list[dict]:
    """The routing layer hands us snake_case; metering reads the wire's camelCase."""
    return [{"timestamp": e.get("timestamp"), "sampledValue": e.get("sampled_value", [])} for e in meter_value]
