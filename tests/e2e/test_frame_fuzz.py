"""A hypothesis fuzzer of OCPP frames against a real `csms serve` (issue 11), bounded to run in CI.

Wrong types, missing fields, huge numbers (a 4,000-digit connectorId, 2^63), deep nesting, unicode,
"not-a-date" timestamps, duplicate unique ids and answers to calls never made: every Call gets a
CallResult or a clear CallError, never InternalError, and the connection keeps serving.
"""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.server import start_csms

websockets_sync = pytest.importorskip("websockets.sync.client")

EXAMPLES = 200
_ids = itertools.count()

_BASE = {
    "BootNotification": {"chargePointVendor": "V", "chargePointModel": "M"},
    "Heartbeat": {},
    "Authorize": {"idTag": "FUZZ"},
    "StatusNotification": {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
    "StartTransaction": {"connectorId": 1, "idTag": "FUZZ", "meterStart": 0, "timestamp": "2026-01-01T00:00:00Z"},
    "StopTransaction": {"transactionId": 1, "meterStop": 10, "timestamp": "2026-01-01T01:00:00Z"},
    "MeterValues": {
        "connectorId": 1,
        "meterValue": [{"timestamp": "2026-01-01T00:30:00Z", "sampledValue": [{"value": "5"}]}],
    },
    "DataTransfer": {"vendorId": "V"},
    "DiagnosticsStatusNotification": {"status": "Idle"},
    "FirmwareStatusNotification": {"status": "Idle"},
}

_odd = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63, -(2**63) - 1, 2**31, 10**4000 - 1, 0, -1]),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(["not-a-date", "2026-13-45T99:99:99Z", "", "\u202e\U0001f600\x00", "1" * 300]),
    st.none(),
    st.booleans(),
    st.recursive(
        st.integers() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=20,
    ),
)


@st.composite
def _payloads(draw) -> tuple[str, dict]:
    action = draw(st.sampled_from(sorted(_BASE)))
    payload = json.loads(json.dumps(_BASE[action]))
    for key in draw(st.lists(st.sampled_from(sorted(payload) or ["x"]), max_size=3, unique=True)):
        if draw(st.booleans()):
            payload.pop(key, None)  # a missing field
        else:
            payload[key] = draw(_odd)  # a wrong type or an odd value
    if draw(st.booleans()):
        payload[draw(st.text(min_size=1, max_size=8))] = draw(_odd)  # an unknown field
    return action, payload


_frames = st.one_of(
    _payloads().map(lambda ap: ("call", ap)),
    st.sampled_from(
        [
            ("raw", "[" * 5000 + "]" * 5000),  # deep nesting
            ("raw", '[2,"x","Heartbeat",' + "[" * 3000 + "]" * 3000 + "]"),
            (
                "raw",
                '[2,"big","StatusNotification",{"connectorId":'
                + "9" * 4000
                + ',"errorCode":"NoError","status":"Available"}]',
            ),
            ("raw", '[3,"never-asked",{}]'),  # answers to calls never made
            ("raw", '[4,"never-asked","GenericError","x",{}]'),
            ("raw", "\u00e9\U0001f600"),
            ("raw", "[]"),
            ("raw", '[5,"x"]'),
        ]
    ),
    st.text(max_size=60).map(lambda t: ("raw", t)),
)


@pytest.fixture(scope="module")
def fuzz_csms(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fuzz")
    proc = start_csms(
        f"sqlite:///{workdir / 'csms.db'}", workdir, ["--allow-unknown-chargers", "--ocpp-messages-per-second", "0"]
    )
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def ws(fuzz_csms):
    with websockets_sync.connect(fuzz_csms.url("FUZZ1"), subprotocols=["ocpp1.6"], max_size=None) as conn:
        conn.send('[2,"boot","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]')
        conn.recv(timeout=5)
        yield conn


def _heartbeat(ws) -> None:
    uid = f"hb{next(_ids)}"
    ws.send(f'[2,"{uid}","Heartbeat",{{}}]')
    while True:  # a duplicate id may bring an answer first; skip up to ours
        answer = json.loads(ws.recv(timeout=5))
        if answer[1] == uid:
            assert answer[0] == 3 and "currentTime" in answer[2], answer
            return


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(frame=_frames, duplicate=st.booleans())
def test_every_frame_gets_a_clear_answer_and_the_connection_keeps_serving(ws, frame, duplicate):
    kind, value = frame
    if kind == "call":
        action, payload = value
        uid = "dup" if duplicate else f"f{next(_ids)}"  # the same unique id over and over
        ws.send(json.dumps([2, uid, action, payload]))
        answer = json.loads(ws.recv(timeout=5))
        assert answer[1] == uid, answer
        assert answer[0] in (3, 4), answer
        if answer[0] == 4:
            assert answer[2] != "InternalError", answer
            assert answer[3], answer  # a description a person can act on
    else:
        ws.send(value)
        if not value.startswith(("[3,", "[4,")):
            answer = json.loads(ws.recv(timeout=5))
            assert answer[0] == 4 and answer[2] in (
                "FormationViolation",
                "ProtocolError",
                "TypeConstraintViolation",
                "PropertyConstraintViolation",
                "OccurenceConstraintViolation",
            ), answer
    _heartbeat(ws)


def test_the_fuzzed_server_logged_no_crash(fuzz_csms, ws):
    _heartbeat(ws)
    log = fuzz_csms.log()
    assert "ocpp.handler_crashed" not in log and "Traceback" not in log, log[-3000:]
