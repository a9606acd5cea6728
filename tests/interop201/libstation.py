"""An OCPP 2.0.1 charging station for tests, built only from the `ocpp` library and `websockets`.

The library's asyncio `ocpp.v201.ChargePoint` runs over a `websockets` client in a background thread with
its own event loop (as tests/simulator/libcsms.py does for a 1.6 central system), so nothing of ours
(ocppj, trio) is on the station's side of the wire. A test drives it with blocking methods; a trio test
calls them through a worker thread:

    with LibStation("ST1", password="secret") as station:
        await trio.to_thread.run_sync(station.connect, csms.url("ST1"))
        boot = await trio.to_thread.run_sync(station.boot)
        assert boot.status == "Accepted"

Each Call the station sends returns the CSMS's answer: the library's `ocpp.v201.call_result` dataclass
(its nested objects stay dicts with snake_case keys), or a `CallErrorAnswer`. An answer that breaks the
2.0.1 schema raises the library's `ValidationError`/`FormatViolationError`; no answer in time raises
`TimeoutError`. The CSMS's Calls are answered as `station.behaviour` says, follow-ups included (a remote
start's TransactionEvent, a triggered message), and every frame both ways is in `received()`/`sent()`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import websockets
from ocpp import exceptions
from ocpp.routing import after, on
from ocpp.v201 import ChargePoint as LibChargePoint
from ocpp.v201 import call, call_result, datatypes

__all__ = [
    "ENERGY",
    "SUBPROTOCOL",
    "Behaviour",
    "CallErrorAnswer",
    "Exchange",
    "LibStation",
    "OpenTransaction",
    "now_iso",
]

SUBPROTOCOL = "ocpp2.0.1"
ENERGY = "Energy.Active.Import.Register"
# The reading context a TransactionEvent's meter value gets when the caller names none.
_CONTEXT_FOR = {"Started": "Transaction.Begin", "Updated": "Sample.Periodic", "Ended": "Transaction.End"}
_log = logging.getLogger(__name__)


def now_iso() -> str:
    """An RFC 3339 UTC timestamp, as 2.0.1's date-time fields want it (ocpp-rpc checks the format)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Exchange:
    """One Call and its answer, either direction, exactly as on the wire (camelCase payloads)."""

    action: str
    payload: dict[str, Any]
    unique_id: str
    at: float  # time.monotonic() when it was sent or received
    answer: list[Any] | None = None  # [3, id, payload] or [4, id, code, description, details]; None: not yet
    answered_at: float | None = None

    @property
    def result(self) -> dict[str, Any] | None:
        """The CallResult's payload; None while unanswered or when answered with a CallError."""
        return self.answer[2] if self.answer is not None and self.answer[0] == 3 else None


@dataclass(frozen=True)
class CallErrorAnswer:
    """The CSMS answered with a CallError: returned, not raised, so a test asserts on it like on any answer."""

    code: str
    description: str
    details: dict[str, Any]


@dataclass
class Behaviour:
    """How the station answers the CSMS. Fields are read at each Call, so a test may change them between steps.

    None means "as a real station would, from its own state" (see each handler); a value forces that answer.
    """

    request_start: str | None = None  # None: Accepted unless the EVSE has a transaction open
    start_after_accept: bool = True  # then send TransactionEvent Started (RemoteStart, with remoteStartId)
    request_stop: str | None = None  # None: Accepted if the transaction is open here, else Rejected
    end_after_accept: bool = True  # then send TransactionEvent Ended (RemoteStop, stoppedReason Remote)
    unlock: str | None = None  # None: UnknownConnector / OngoingAuthorizedTransaction / Unlocked from state
    trigger: str | None = None  # None: Accepted for what it can send now, else Rejected / NotImplemented
    ongoing_indicator: bool | None = None  # None: whether that transaction is open here
    messages_in_queue: bool = False
    reset: str = "Accepted"
    change_availability: str = "Accepted"  # Accepted is followed by StatusNotification(s)
    set_variables: str = "Accepted"
    # Seconds before answering any Call (a slow station; past the CSMS's timeout: no answer). The library
    # handles a Call inline in its reader, so the station reads nothing else meanwhile, as a busy one would not.
    answer_delay: float = 0.0
    fail: dict[str, str] = field(default_factory=dict)  # action -> OCPP error code to answer with a CallError


@dataclass
class OpenTransaction:
    """A transaction this station started and has not ended: what triggers, stops and status queries read."""

    transaction_id: str
    evse_id: int
    connector_id: int
    next_seq_no: int = 0
    remote_start_id: int | None = None


class _Point(LibChargePoint):
    """The library's v201 ChargePoint on the station's side; handlers only defer to the LibStation."""

    station: LibStation

    async def route_message(self, raw_msg: str) -> None:
        self.station._frame_in(raw_msg)
        await super().route_message(raw_msg)

    async def _send(self, message: str) -> None:
        self.station._frame_out(message)
        await super()._send(message)

    @on("RequestStartTransaction")
    async def on_request_start(
        self, id_token: dict, remote_start_id: int, call_unique_id: str, evse_id: int | None = None, **_: Any
    ) -> Any:
        return await self.station._answer_request_start(call_unique_id, id_token, remote_start_id, evse_id)

    @on("RequestStopTransaction")
    async def on_request_stop(self, transaction_id: str, call_unique_id: str, **_: Any) -> Any:
        return await self.station._answer_request_stop(call_unique_id, transaction_id)

    @on("UnlockConnector")
    async def on_unlock(self, evse_id: int, connector_id: int, **_: Any) -> Any:
        return await self.station._answer_unlock(evse_id, connector_id)

    @on("TriggerMessage")
    async def on_trigger(self, requested_message: str, call_unique_id: str, evse: dict | None = None, **_: Any) -> Any:
        return await self.station._answer_trigger(call_unique_id, requested_message, evse)

    @on("GetTransactionStatus")
    async def on_get_transaction_status(self, transaction_id: str | None = None, **_: Any) -> Any:
        return await self.station._answer_transaction_status(transaction_id)

    @on("Reset")
    async def on_reset(self, type: str, evse_id: int | None = None, **_: Any) -> Any:
        await self.station._before_answer("Reset")
        return call_result.Reset(status=self.station.behaviour.reset)

    @on("ChangeAvailability")
    async def on_change_availability(
        self, operational_status: str, call_unique_id: str, evse: dict | None = None, **_: Any
    ) -> Any:
        return await self.station._answer_change_availability(call_unique_id, operational_status, evse)

    @on("GetVariables")
    async def on_get_variables(self, get_variable_data: list[dict], **_: Any) -> Any:
        return await self.station._answer_get_variables(get_variable_data)

    @on("SetVariables")
    async def on_set_variables(self, set_variable_data: list[dict], **_: Any) -> Any:
        return await self.station._answer_set_variables(set_variable_data)

    # The library runs an @after hook once the answer is sent; one per action (a stacked @after keeps only one).
    @after("RequestStartTransaction")
    async def after_request_start(self, call_unique_id: str, **_: Any) -> None:
        await self.station._run_follow_up(call_unique_id)

    @after("RequestStopTransaction")
    async def after_request_stop(self, call_unique_id: str, **_: Any) -> None:
        await self.station._run_follow_up(call_unique_id)

    @after("TriggerMessage")
    async def after_trigger(self, call_unique_id: str, **_: Any) -> None:
        await self.station._run_follow_up(call_unique_id)

    @after("ChangeAvailability")
    async def after_change_availability(self, call_unique_id: str, **_: Any) -> None:
        await self.station._run_follow_up(call_unique_id)


class LibStation:
    """One OCPP 2.0.1 charging station. Blocking, thread-safe methods; its loop runs in its own thread."""

    def __init__(
        self,
        station_id: str,
        *,
        password: str | None = None,
        connectors: Iterable[tuple[int, int]] = ((1, 1),),
        response_timeout: float = 5.0,
        validate: bool = True,
    ) -> None:
        """`password`: HTTP Basic auth as station_id:password (security profile 1); `connectors`: its
        (evseId, connectorId) pairs; `validate`: check every payload both ways against the 2.0.1 schemas."""
        self.station_id = station_id
        self.password = password
        self.connectors = list(connectors)
        self.response_timeout = response_timeout
        self.validate = validate
        self.behaviour = Behaviour()
        self.meter_wh = 0  # the register a follow-up TransactionEvent or MeterValues reports
        self.variables: dict[tuple[str, str], str] = {}  # (component, variable) -> value, for Get/SetVariables
        self.close_code: int | None = None  # how the last connection ended (1006: no close frame)
        self.close_reason: str | None = None
        self.errors: list[BaseException] = []  # follow-ups that failed (no one else would see them)
        self._status: dict[tuple[int, int], str] = {}  # last connectorStatus sent per (evse, connector)
        self._transactions: dict[str, OpenTransaction] = {}
        self._follow_ups: dict[str, Callable[[], Coroutine[Any, Any, Any]]] = {}
        self._received: list[Exchange] = []
        self._sent: list[Exchange] = []
        self._received_by_id: dict[str, Exchange] = {}
        self._sent_by_id: dict[str, Exchange] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._point: _Point | None = None
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> LibStation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self, url: str, *, timeout: float = 10.0) -> str | None:
        """Open the WebSocket to `url` (the full URL, ending in the station id) offering ocpp2.0.1.

        Returns the subprotocol the CSMS chose (None: it chose none; the test decides if that is a failure).
        A refused handshake raises websockets' InvalidStatus (e.g. a 401 for a wrong password).
        """
        self._ensure_loop()
        return self._run(self._connect(url), timeout)

    def disconnect(self, *, timeout: float = 10.0) -> None:
        """Close the WebSocket normally (1000) and wait until it is closed; the station can connect again."""
        if self._loop is not None:
            self._run(self._disconnect(), timeout)

    def close(self) -> None:
        """Disconnect and stop the station's thread."""
        if self._loop is None:
            return
        with contextlib.suppress(Exception):
            self.disconnect()
        loop, self._loop = self._loop, None
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
            if not self._thread.is_alive():
                loop.close()

    @property
    def connected(self) -> bool:
        return self._reader is not None and not self._reader.done()

    # ------------------------------------------------------ station -> CSMS
    def send(self, request: Any) -> Any:
        """Send any `ocpp.v201.call` dataclass; returns the `call_result` dataclass or a CallErrorAnswer."""
        return self._run(self._call(request), self.response_timeout + 5)

    def boot(self, reason: str = "PowerUp", *, vendor: str = "OcppLib", model: str = "V201") -> Any:
        return self.send(_boot(reason, vendor, model))

    def heartbeat(self) -> Any:
        return self.send(call.Heartbeat())

    def status(self, evse_id: int, connector_id: int, connector_status: str, *, timestamp: str | None = None) -> Any:
        """StatusNotification; the station remembers it as what a triggered StatusNotification reports."""
        return self._run(self._status_notification(evse_id, connector_id, connector_status, timestamp), None)

    def authorize(self, id_token: str, type: str = "ISO14443") -> Any:
        return self.send(call.Authorize(id_token=datatypes.IdTokenType(id_token=id_token, type=type)))

    def transaction_event(
        self,
        event_type: str,
        transaction_id: str,
        trigger_reason: str,
        *,
        seq_no: int | None = None,
        charging_state: str | None = None,
        stopped_reason: str | None = None,
        remote_start_id: int | None = None,
        evse_id: int | None = None,
        connector_id: int | None = None,
        id_token: str | None = None,
        id_token_type: str = "ISO14443",
        meter_wh: float | None = None,
        context: str | None = None,
        offline: bool | None = None,
        timestamp: str | None = None,
        meter_value: list[dict[str, Any]] | None = None,
    ) -> Any:
        """TransactionEvent with any of its fields; what is left out is left out of the message.

        seqNo counts per transaction from 0 at Started unless given. `meter_wh` becomes one meterValue with
        an Energy.Active.Import.Register sample in the context the event type implies (Transaction.Begin /
        Sample.Periodic / Transaction.End) or `context`; `meter_value` (snake_case dicts) replaces it whole.
        Started opens the transaction here and Ended closes it (what the station's own answers read).
        """
        fields = dict(locals())
        del fields["self"]
        return self._run(self._transaction_event(**fields), None)

    def meter_values(
        self, evse_id: int, wh: float, *, context: str = "Sample.Periodic", timestamp: str | None = None
    ) -> Any:
        return self.send(call.MeterValues(evse_id=evse_id, meter_value=[_energy(wh, context, timestamp)]))

    def notify_event(
        self,
        *,
        component: str = "Connector",
        variable: str = "AvailabilityState",
        actual_value: str = "Occupied",
        evse_id: int | None = 1,
        connector_id: int | None = 1,
        trigger: str = "Delta",
        event_id: int = 1,
        seq_no: int = 0,
        transaction_id: str | None = None,
    ) -> Any:
        """NotifyEvent with one event; for several, `send(call.NotifyEvent(...))`."""
        evse = None if evse_id is None else datatypes.EVSEType(id=evse_id, connector_id=connector_id)
        now = now_iso()
        event = datatypes.EventDataType(
            event_id=event_id,
            timestamp=now,
            trigger=trigger,
            actual_value=actual_value,
            event_notification_type="HardWiredNotification",
            component=datatypes.ComponentType(name=component, evse=evse),
            variable=datatypes.VariableType(name=variable),
            transaction_id=transaction_id,
        )
        return self.send(call.NotifyEvent(generated_at=now, seq_no=seq_no, event_data=[event]))

    def security_event(self, type: str = "SettingSystemTime", *, tech_info: str | None = None) -> Any:
        return self.send(call.SecurityEventNotification(type=type, timestamp=now_iso(), tech_info=tech_info))

    def firmware_status(self, status: str, *, request_id: int | None = None) -> Any:
        return self.send(call.FirmwareStatusNotification(status=status, request_id=request_id))

    def log_status(self, status: str, *, request_id: int | None = None) -> Any:
        return self.send(call.LogStatusNotification(status=status, request_id=request_id))

    def notify_report(
        self, request_id: int, report_data: list[dict[str, Any]] | None = None, *, seq_no: int = 0, tbc: bool = False
    ) -> Any:
        """NotifyReport; `report_data` is snake_case dicts (component, variable, variable_attribute, ...)."""
        return self.send(
            call.NotifyReport(
                request_id=request_id, generated_at=now_iso(), seq_no=seq_no, report_data=report_data, tbc=tbc
            )
        )

    # ------------------------------------------------------------- records
    def received(self, action: str | None = None) -> list[Exchange]:
        """The CSMS's Calls so far, in order, each with the answer the station gave (once given)."""
        with self._lock:
            return [e for e in self._received if action is None or e.action == action]

    def sent(self, action: str | None = None) -> list[Exchange]:
        """The station's Calls so far (follow-ups included), in order, each with the CSMS's answer frame."""
        with self._lock:
            return [e for e in self._sent if action is None or e.action == action]

    def transactions(self) -> dict[str, OpenTransaction]:
        """The transactions open here (started, not ended), by transactionId."""
        with self._lock:
            return dict(self._transactions)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Poll `predicate` until true or `timeout` (s); for what the CSMS does on its own time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()

    # ------------------------------------------------- loop thread: plumbing
    def _ensure_loop(self) -> None:
        if self._loop is not None:
            return
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name=f"libstation-{self.station_id}", daemon=True)
        self._loop = loop
        self._thread.start()

    def _run(self, coro: Coroutine[Any, Any, Any], timeout: float | None) -> Any:
        if self._loop is None:
            coro.close()
            raise RuntimeError(f"station {self.station_id} is not connected")
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(self.response_timeout * 3 + 5 if timeout is None else timeout)
        except TimeoutError:
            fut.cancel()
            raise

    async def _connect(self, url: str) -> str | None:
        if self.connected:
            raise RuntimeError(f"station {self.station_id} is already connected")
        headers = {}
        if self.password is not None:
            token = base64.b64encode(f"{self.station_id}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        ws = await websockets.connect(url, subprotocols=[SUBPROTOCOL], additional_headers=headers, open_timeout=10)
        point = _Point(self.station_id, ws, response_timeout=self.response_timeout)
        point.station = self
        self._point, self._ws = point, ws
        self.close_code = self.close_reason = None
        self._reader = asyncio.get_running_loop().create_task(self._read(point, ws))
        return ws.subprotocol

    async def _read(self, point: _Point, ws: Any) -> None:
        try:
            await point.start()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code, self.close_reason = ws.close_code, ws.close_reason

    async def _disconnect(self) -> None:
        if self._ws is not None and self._reader is not None:
            await self._ws.close()
            await asyncio.wait({self._reader}, timeout=5)

    def _frame_in(self, raw: str) -> None:
        msg = _frame(raw)
        if msg is None:
            return
        with self._lock:
            if msg[0] == 2 and len(msg) >= 4:
                exchange = Exchange(str(msg[2]), msg[3], str(msg[1]), time.monotonic())
                self._received.append(exchange)
                self._received_by_id[exchange.unique_id] = exchange
            elif msg[0] in (3, 4) and (exchange := self._sent_by_id.get(str(msg[1]))) is not None:
                exchange.answer, exchange.answered_at = msg, time.monotonic()

    def _frame_out(self, raw: str) -> None:
        msg = _frame(raw)
        if msg is None:
            return
        with self._lock:
            if msg[0] == 2 and len(msg) >= 4:
                exchange = Exchange(str(msg[2]), msg[3], str(msg[1]), time.monotonic())
                self._sent.append(exchange)
                self._sent_by_id[exchange.unique_id] = exchange
            elif msg[0] in (3, 4) and (exchange := self._received_by_id.get(str(msg[1]))) is not None:
                exchange.answer, exchange.answered_at = msg, time.monotonic()

    async def _call(self, request: Any) -> Any:
        if self._point is None or not self.connected:
            raise RuntimeError(f"station {self.station_id} is not connected")
        unique_id = str(uuid.uuid4())
        result = await self._point.call(
            request, suppress=True, unique_id=unique_id, skip_schema_validation=not self.validate
        )
        if result is not None:
            return result
        with self._lock:  # the library returns None for a CallError it suppressed; its frame is recorded
            frame = self._sent_by_id[unique_id].answer
        assert frame is not None and frame[0] == 4, frame
        return CallErrorAnswer(str(frame[2]), str(frame[3]), frame[4] if len(frame) > 4 else {})

    # --------------------------------------------- loop thread: what it sends
    async def _status_notification(
        self, evse_id: int, connector_id: int, connector_status: str, timestamp: str | None
    ) -> Any:
        self._status[(evse_id, connector_id)] = connector_status
        return await self._call(
            call.StatusNotification(
                timestamp=timestamp or now_iso(),
                connector_status=connector_status,
                evse_id=evse_id,
                connector_id=connector_id,
            )
        )

    async def _transaction_event(
        self,
        event_type: str,
        transaction_id: str,
        trigger_reason: str,
        *,
        seq_no: int | None = None,
        charging_state: str | None = None,
        stopped_reason: str | None = None,
        remote_start_id: int | None = None,
        evse_id: int | None = None,
        connector_id: int | None = None,
        id_token: str | None = None,
        id_token_type: str = "ISO14443",
        meter_wh: float | None = None,
        context: str | None = None,
        offline: bool | None = None,
        timestamp: str | None = None,
        meter_value: list[dict[str, Any]] | None = None,
    ) -> Any:
        with self._lock:
            open_tx = self._transactions.get(transaction_id)
            if open_tx is None and event_type == "Started":
                open_tx = OpenTransaction(
                    transaction_id, evse_id or 1, connector_id or 1, remote_start_id=remote_start_id
                )
                self._transactions[transaction_id] = open_tx
            if seq_no is None:
                seq_no = 0 if open_tx is None else open_tx.next_seq_no
            if open_tx is not None:
                open_tx.next_seq_no = seq_no + 1
            if event_type == "Ended":
                self._transactions.pop(transaction_id, None)
        if meter_value is None and meter_wh is not None:
            meter_value = [_energy(meter_wh, context or _CONTEXT_FOR.get(event_type, "Sample.Periodic"), timestamp)]
        return await self._call(
            call.TransactionEvent(
                event_type=event_type,
                timestamp=timestamp or now_iso(),
                trigger_reason=trigger_reason,
                seq_no=seq_no,
                transaction_info=datatypes.TransactionType(
                    transaction_id=transaction_id,
                    charging_state=charging_state,
                    stopped_reason=stopped_reason,
                    remote_start_id=remote_start_id,
                ),
                meter_value=meter_value,
                offline=offline,
                evse=None if evse_id is None else datatypes.EVSEType(id=evse_id, connector_id=connector_id),
                id_token=None if id_token is None else datatypes.IdTokenType(id_token=id_token, type=id_token_type),
            )
        )

    # ------------------------------------------- loop thread: how it answers
    async def _before_answer(self, action: str) -> None:
        if self.behaviour.answer_delay:
            await asyncio.sleep(self.behaviour.answer_delay)
        code = self.behaviour.fail.get(action)
        if code is not None:
            error = exceptions.GenericError(description=f"told to fail {action} with {code}")
            error.code = code  # the library answers with the exception's code
            raise error

    def _then(self, call_unique_id: str, follow_up: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Send `follow_up` once this answer is out (the @after hook picks it up by unique id)."""
        self._follow_ups[call_unique_id] = follow_up

    async def _run_follow_up(self, call_unique_id: str) -> None:
        follow_up = self._follow_ups.pop(call_unique_id, None)
        if follow_up is None:
            return
        try:
            await follow_up()
        except Exception as error:  # an asyncio.ensure_future'd hook: keep it where a test can see it
            _log.exception("libstation %s: follow-up failed", self.station_id)
            self.errors.append(error)

    def _open_on(self, evse_id: int | None) -> OpenTransaction | None:
        with self._lock:
            return next((t for t in self._transactions.values() if evse_id in (None, t.evse_id)), None)

    async def _answer_request_start(
        self, call_unique_id: str, id_token: dict, remote_start_id: int, evse_id: int | None
    ) -> Any:
        await self._before_answer("RequestStartTransaction")
        status = self.behaviour.request_start
        if status is None:
            status = "Rejected" if self._open_on(evse_id) is not None else "Accepted"
        if status == "Accepted" and self.behaviour.start_after_accept:
            transaction_id = str(uuid.uuid4())
            evse = evse_id or 1

            async def started() -> Any:
                return await self._transaction_event(
                    "Started",
                    transaction_id,
                    "RemoteStart",
                    charging_state="EVConnected",
                    remote_start_id=remote_start_id,
                    evse_id=evse,
                    connector_id=1,
                    id_token=id_token["id_token"],
                    id_token_type=id_token["type"],
                    meter_wh=self.meter_wh,
                )

            self._then(call_unique_id, started)
        return call_result.RequestStartTransaction(status=status)

    async def _answer_request_stop(self, call_unique_id: str, transaction_id: str) -> Any:
        await self._before_answer("RequestStopTransaction")
        with self._lock:
            open_tx = self._transactions.get(transaction_id)
        status = self.behaviour.request_stop
        if status is None:
            status = "Accepted" if open_tx is not None else "Rejected"
        if status == "Accepted" and open_tx is not None and self.behaviour.end_after_accept:

            async def ended() -> Any:
                return await self._transaction_event(
                    "Ended",
                    open_tx.transaction_id,
                    "RemoteStop",
                    charging_state="Idle",
                    stopped_reason="Remote",
                    meter_wh=self.meter_wh,
                )

            self._then(call_unique_id, ended)
        return call_result.RequestStopTransaction(status=status)

    async def _answer_unlock(self, evse_id: int, connector_id: int) -> Any:
        await self._before_answer("UnlockConnector")
        status = self.behaviour.unlock
        if status is None:
            if (evse_id, connector_id) not in self.connectors:
                status = "UnknownConnector"
            elif self._open_on(evse_id) is not None:
                status = "OngoingAuthorizedTransaction"
            else:
                status = "Unlocked"
        return call_result.UnlockConnector(status=status)

    async def _answer_trigger(self, call_unique_id: str, requested_message: str, evse: dict | None) -> Any:
        await self._before_answer("TriggerMessage")
        follow_up = self._triggered(requested_message, evse)
        status = self.behaviour.trigger
        if status is None:
            if follow_up is not None:
                status = "Accepted"
            else:
                status = "Rejected" if requested_message == "TransactionEvent" else "NotImplemented"
        if status == "Accepted" and follow_up is not None:
            self._then(call_unique_id, follow_up)
        return call_result.TriggerMessage(status=status)

    def _triggered(self, requested_message: str, evse: dict | None) -> Callable[[], Coroutine[Any, Any, Any]] | None:
        """What a TriggerMessage makes the station send, or None if it has nothing to send (or cannot)."""
        evse_id = None if evse is None else evse.get("id")
        if requested_message == "StatusNotification":
            wanted = [
                c
                for c in self.connectors
                if evse is None or (c[0] == evse_id and evse.get("connector_id") in (None, c[1]))
            ]

            async def statuses() -> None:
                for e, c in wanted:
                    await self._status_notification(e, c, self._status.get((e, c), "Available"), None)

            return statuses
        if requested_message == "TransactionEvent":
            open_tx = self._open_on(evse_id)
            if open_tx is None:
                return None

            async def updated() -> Any:
                return await self._transaction_event(
                    "Updated", open_tx.transaction_id, "Trigger", meter_wh=self.meter_wh, context="Trigger"
                )

            return updated
        if requested_message == "MeterValues":
            return lambda: self._call(
                call.MeterValues(evse_id=evse_id or 1, meter_value=[_energy(self.meter_wh, "Trigger", None)])
            )
        if requested_message == "Heartbeat":
            return lambda: self._call(call.Heartbeat())
        if requested_message == "BootNotification":
            return lambda: self._call(_boot("Triggered", "OcppLib", "V201"))
        return None

    async def _answer_transaction_status(self, transaction_id: str | None) -> Any:
        await self._before_answer("GetTransactionStatus")
        ongoing = None
        if transaction_id is not None:  # 2.0.1: ongoingIndicator only when a transaction was asked about
            ongoing = self.behaviour.ongoing_indicator
            if ongoing is None:
                with self._lock:
                    ongoing = transaction_id in self._transactions
        return call_result.GetTransactionStatus(
            messages_in_queue=self.behaviour.messages_in_queue, ongoing_indicator=ongoing
        )

    async def _answer_change_availability(self, call_unique_id: str, operational_status: str, evse: dict | None) -> Any:
        await self._before_answer("ChangeAvailability")
        status = self.behaviour.change_availability
        if status == "Accepted":
            connector_status = "Available" if operational_status == "Operative" else "Unavailable"
            wanted = [c for c in self.connectors if evse is None or c[0] == evse.get("id")]

            async def statuses() -> None:
                for e, c in wanted:
                    await self._status_notification(e, c, connector_status, None)

            self._then(call_unique_id, statuses)
        return call_result.ChangeAvailability(status=status)

    async def _answer_get_variables(self, get_variable_data: list[dict]) -> Any:
        await self._before_answer("GetVariables")
        results = []
        for item in get_variable_data:
            key = (item["component"]["name"], item["variable"]["name"])
            value = self.variables.get(key)
            known_component = any(c == key[0] for c, _ in self.variables)
            results.append(
                {
                    "attribute_status": "Accepted"
                    if value is not None
                    else ("UnknownVariable" if known_component else "UnknownComponent"),
                    "attribute_value": value,
                    "component": item["component"],
                    "variable": item["variable"],
                }
            )
        return call_result.GetVariables(get_variable_result=results)

    async def _answer_set_variables(self, set_variable_data: list[dict]) -> Any:
        await self._before_answer("SetVariables")
        status = self.behaviour.set_variables
        results = []
        for item in set_variable_data:
            if status == "Accepted":
                self.variables[(item["component"]["name"], item["variable"]["name"])] = item["attribute_value"]
            results.append({"attribute_status": status, "component": item["component"], "variable": item["variable"]})
        return call_result.SetVariables(set_variable_result=results)


def _boot(reason: str, vendor: str, model: str) -> call.BootNotification:
    return call.BootNotification(
        charging_station=datatypes.ChargingStationType(vendor_name=vendor, model=model), reason=reason
    )


def _energy(wh: float, context: str, timestamp: str | None) -> datatypes.MeterValueType:
    """One meterValue: the energy register in Wh, in a reading context."""
    return datatypes.MeterValueType(
        timestamp=timestamp or now_iso(),
        sampled_value=[
            datatypes.SampledValueType(
                value=wh, context=context, measurand=ENERGY, unit_of_measure=datatypes.UnitOfMeasureType(unit="Wh")
            )
        ],
    )


def _frame(raw: str | bytes) -> list[Any] | None:
    try:
        msg = json.loads(raw)
    except ValueError:
        return None
    return msg if isinstance(msg, list) and len(msg) >= 3 and msg[0] in (2, 3, 4) else None
