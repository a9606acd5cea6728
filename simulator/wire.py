"""What a charge point says, per OCPP version: payloads only, no state, no I/O.

The shell (`chargepoint.py`) decides what happens (a status, a start, a meter sample, an end) and
a `Wire` words it: OCPP 1.6 (StatusNotification per connector, Start/StopTransaction, MeterValues
with the CSMS's transactionId) or OCPP 2.0.1 (StatusNotification per EVSE with a connectorStatus,
TransactionEvent Started/Updated/Ended with the station's own transactionId and a seqNo). In 2.0.1
each connector of the model is an EVSE with one connector (`evseId` = our connector id,
`connectorId` 1), as most AC stations are.

2.0.1 as real stations send it (EVerest libocpp #577/#580): `evse` in the first event of a
transaction only, no `idToken` in an Ended after a remote stop or when the car left, events queued
while offline carry `offline: true` and the time they happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ocppj import OcppVersion
from ocppj.versions import V16, V201

from .identity import Identity

__all__ = ["Sample", "TxFacts", "Wire", "WIRES", "wire_for", "connector_status"]

Payload = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Sample:
    """One meter reading: the energy register (Wh) and the power (W) at `timestamp`."""

    timestamp: str
    energy_wh: int
    power_w: int
    context: str  # Transaction.Begin, Sample.Periodic, Transaction.End, Trigger


@dataclass(frozen=True, slots=True)
class TxFacts:
    """What a transaction event says about its transaction, captured when the event happened."""

    connector_id: int
    id_tag: str
    station_tx_id: str  # 2.0.1: the station names its transactions
    seq_no: int  # 2.0.1: per transaction, from 0 at Started
    offline: bool  # 2.0.1: it happened while the station was offline
    remote_start_id: int | None = None
    names_evse: bool = True  # 2.0.1: the Started says its EVSE (the no_evse fault: no event does)


# 1.6 status -> 2.0.1 connectorStatus: a cable in is Occupied, whatever the car does.
_CONNECTOR_STATUS = {
    "Available": "Available",
    "Preparing": "Occupied",
    "Charging": "Occupied",
    "SuspendedEV": "Occupied",
    "SuspendedEVSE": "Occupied",
    "Finishing": "Occupied",
    "Reserved": "Reserved",
    "Unavailable": "Unavailable",
    "Faulted": "Faulted",
}

# The shell's stop reasons (1.6 names) in 2.0.1: (stoppedReason, triggerReason, says the idToken).
_ENDED = {
    "Local": ("Local", "StopAuthorized", True),
    "EVDisconnected": ("EVDisconnected", "EVCommunicationLost", False),
    "Remote": ("Remote", "RemoteStop", False),
    "UnlockCommand": ("Other", "UnlockCommand", False),
    "SoftReset": ("ImmediateReset", "ResetCommand", False),
    "HardReset": ("ImmediateReset", "ResetCommand", False),
    "DeAuthorized": ("DeAuthorized", "Deauthorized", False),
}


def connector_status(status: str) -> str:
    """A 1.6 connector status as 2.0.1's connectorStatus (unknown ones pass as they are)."""
    return _CONNECTOR_STATUS.get(status, status)


class Wire:
    """OCPP 1.6J: the shell's own words."""

    version: OcppVersion = V16
    start_action = "StartTransaction"
    stop_action = "StopTransaction"
    sample_action = "MeterValues"
    says_station_status = True  # connector 0: the charge point itself
    unlock_ends_transaction = True  # 1.6: UnlockConnector stops a running transaction (UnlockCommand) first
    unknown_connector = "UnlockFailed"  # the UnlockConnector answer for a connector it does not have

    def boot(self, identity: Identity, reason: str = "PowerUp") -> Payload:
        return identity.boot_payload()

    def status_text(self, status: str) -> str:
        """The status as this version reports it (what "the CSMS was told" means in truth and trace)."""
        return status

    def status(self, connector_id: int, status: str, timestamp: str) -> Payload:
        return {"connectorId": connector_id, "errorCode": "NoError", "status": status, "timestamp": timestamp}

    def authorize(self, tag: str) -> Payload:
        return {"idTag": tag}

    def auth_status(self, answer: Payload) -> str | None:
        info = answer.get("idTagInfo")
        return info.get("status") if isinstance(info, dict) else None

    def start(self, tx: TxFacts, meter_start: int, timestamp: str, sample: Sample) -> Payload:
        return {"connectorId": tx.connector_id, "idTag": tx.id_tag, "meterStart": meter_start, "timestamp": timestamp}

    def started_id(self, tx: TxFacts, answer: Payload) -> int | str | None:
        """The transaction's id once the CSMS acknowledged its start."""
        value = answer.get("transactionId")
        return value if isinstance(value, int) else None

    def start_auth(self, answer: Payload) -> str | None:
        """The id tag's status in the start's answer (1.6 always says it)."""
        return self.auth_status(answer)

    def replayed(self, payload: Payload | None) -> Payload | None:
        """A message sent again after it was acknowledged (replay_after_end)."""
        return payload

    def sample(self, connector_id: int, sample: Sample, tx: TxFacts | None, transaction_id: Any) -> Payload:
        payload: Payload = {"connectorId": connector_id, "meterValue": [self._meter_value(sample)]}
        if transaction_id is not None:
            payload["transactionId"] = transaction_id
        return payload

    def stop(self, tx: TxFacts, transaction_id: Any, reason: str, meter_stop: int, sample: Sample) -> Payload | None:
        if transaction_id is None:  # its StartTransaction was lost: there is nothing to stop
            return None
        return {
            "transactionId": transaction_id,
            "meterStop": meter_stop,
            "timestamp": sample.timestamp,
            "reason": reason,
            "idTag": tx.id_tag,
        }

    def _meter_value(self, s: Sample) -> Payload:
        return {
            "timestamp": s.timestamp,
            "sampledValue": [
                {
                    "value": str(s.energy_wh),
                    "context": s.context,
                    "measurand": "Energy.Active.Import.Register",
                    "unit": "Wh",
                },
                {"value": str(s.power_w), "context": s.context, "measurand": "Power.Active.Import", "unit": "W"},
            ],
        }


class Wire201(Wire):
    """OCPP 2.0.1: EVSEs, TransactionEvent, connectorStatus."""

    version = V201
    start_action = "TransactionEvent"
    stop_action = "TransactionEvent"
    sample_action = "TransactionEvent"
    says_station_status = False
    unlock_ends_transaction = False  # 2.0.1 F05: OngoingAuthorizedTransaction, the cable stays locked
    unknown_connector = "UnknownConnector"

    def boot(self, identity: Identity, reason: str = "PowerUp") -> Payload:
        return {
            "reason": reason,
            "chargingStation": {
                "vendorName": identity.vendor,
                "model": identity.model,
                "serialNumber": identity.serial,
                "firmwareVersion": identity.firmware,
            },
        }

    def status_text(self, status: str) -> str:
        return connector_status(status)

    def status(self, connector_id: int, status: str, timestamp: str) -> Payload:
        return {"timestamp": timestamp, "connectorStatus": status, "evseId": connector_id, "connectorId": 1}

    def authorize(self, tag: str) -> Payload:
        return {"idToken": _token(tag)}

    def auth_status(self, answer: Payload) -> str | None:
        info = answer.get("idTokenInfo")
        return info.get("status") if isinstance(info, dict) else None

    def start(self, tx: TxFacts, meter_start: int, timestamp: str, sample: Sample) -> Payload:
        remote = tx.remote_start_id is not None
        payload = self._event("Started", "RemoteStart" if remote else "Authorized", tx, timestamp, "Charging")
        if tx.names_evse:
            payload["evse"] = {"id": tx.connector_id, "connectorId": 1}  # in the first event only
        payload["idToken"] = _token(tx.id_tag)
        if remote:
            payload["transactionInfo"]["remoteStartId"] = tx.remote_start_id
        payload["meterValue"] = [self._meter_value(sample)]
        return payload

    def started_id(self, tx: TxFacts, answer: Payload) -> int | str | None:
        return tx.station_tx_id  # the station's own: acknowledged now

    def start_auth(self, answer: Payload) -> str | None:
        return self.auth_status(answer) or "Accepted"  # idTokenInfo is optional: no word is no refusal

    def replayed(self, payload: Payload | None) -> Payload | None:
        return None if payload is None else {**payload, "offline": True}

    def sample(self, connector_id: int, sample: Sample, tx: TxFacts | None, transaction_id: Any) -> Payload:
        if tx is None:  # no transaction: a MeterValues of the EVSE
            return {"evseId": connector_id, "meterValue": [self._meter_value(sample)]}
        trigger = "Trigger" if sample.context == "Trigger" else "MeterValuePeriodic"
        payload = self._event("Updated", trigger, tx, sample.timestamp, None)
        payload["meterValue"] = [self._meter_value(sample)]
        return payload

    def stop(self, tx: TxFacts, transaction_id: Any, reason: str, meter_stop: int, sample: Sample) -> Payload | None:
        stopped, trigger, says_token = _ENDED.get(reason, ("Other", "AbnormalCondition", False))
        state = "Idle" if reason == "EVDisconnected" else "EVConnected"
        payload = self._event("Ended", trigger, tx, sample.timestamp, state)
        payload["transactionInfo"]["stoppedReason"] = stopped
        if says_token:
            payload["idToken"] = _token(tx.id_tag)
        payload["meterValue"] = [self._meter_value(sample)]
        return payload

    def _event(self, event_type: str, trigger: str, tx: TxFacts, timestamp: str, state: str | None) -> Payload:
        info: Payload = {"transactionId": tx.station_tx_id}
        if state is not None:
            info["chargingState"] = state
        payload: Payload = {
            "eventType": event_type,
            "timestamp": timestamp,
            "triggerReason": trigger,
            "seqNo": tx.seq_no,
            "transactionInfo": info,
        }
        if tx.offline:
            payload["offline"] = True
        return payload

    def _meter_value(self, s: Sample) -> Payload:
        return {
            "timestamp": s.timestamp,
            "sampledValue": [
                {
                    "value": s.energy_wh,
                    "context": s.context,
                    "measurand": "Energy.Active.Import.Register",
                    "unitOfMeasure": {"unit": "Wh"},
                },
                {
                    "value": s.power_w,
                    "context": s.context,
                    "measurand": "Power.Active.Import",
                    "unitOfMeasure": {"unit": "W"},
                },
            ],
        }


def _token(tag: str) -> Payload:
    return {"idToken": tag, "type": "ISO14443"}


WIRES: dict[str, Wire] = {"1.6": Wire(), "2.0.1": Wire201()}


def wire_for(version: str) -> Wire:
    """The wire of an OCPP version name ("1.6", "2.0.1"); ValueError names the ones there are."""
    try:
        return WIRES[version]
    except KeyError:
        raise ValueError(f"OCPP {version!r}: the simulator speaks {' and '.join(WIRES)}") from None
