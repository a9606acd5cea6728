"""schemathesis against the REST API's own OpenAPI document on a real `csms serve` (issue 11), bounded for CI.

Every operation of `/openapi.json`, with schema-valid (positive) and schema-violating (negative)
requests, as an admin, EXAMPLES of each per operation. The checks, schemathesis' own unless said:
- `not_a_server_error`: never a 5xx (and no `api.crashed` ERROR in the server log);
- the envelope (ours, `_envelope`): every 4xx is `{"success": false, "message": "<not empty>"}`,
  checked from the body itself so that it holds even if the document were wrong;
- `status_code_conformance`, `content_type_conformance`, `response_schema_conformance`: the answer
  is one the document declares (4XX/5XX are declared as the envelope, so this checks it too);
- `negative_data_rejection`: a request the schema forbids is refused with a 4xx.
Left out, with the reason:
- `positive_data_acceptance` (a schema-valid request must be accepted): the API checks more than
  its schema says on purpose, with messages a person can act on (charge point ids of printable
  ASCII, passwords of 16 to 40 characters, `verdict` one of free/busy/offline, id tags of printable
  characters), and most generated ids name nothing (404) or a state that refuses (409);
- `ignored_auth`: the document declares no security scheme (a dependency checks the bearer
  token), so schemathesis has nothing to test; tests/e2e/test_rest_basics.py covers tokens;
- the stateful checks (`use_after_free`, `ensure_resource_availability`): the document has no links.

How it runs: schemathesis' pytest integration (`schemathesis.pytest.from_fixture` +
`@schema.parametrize()`) fails on pytest 9.2 (it sets `Function._nodeid`, which pytest removed), and
importing schemathesis patches hypothesis for the whole process (a 32 KiB buffer instead of 8 KiB, no
falsifying-example printer), which would change the other fuzzers' derandomized examples in the same
xdist worker. So the test runs this module as a subprocess (`python -m tests.e2e.test_schemathesis
URL TOKEN`), which drives each operation's strategy (`APIOperation.as_strategy`) with a plain
hypothesis `@given`, derandomized like the other fuzzers, and reports every operation's failures.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

# Per operation and per mode: 10 is 366 requests in CI. CSMS_SCHEMATHESIS_EXAMPLES=100 digs deeper
# (3,606 requests, 1-2 min per database): that is how the NUL finding below was made.
EXAMPLES = int(os.environ.get("CSMS_SCHEMATHESIS_EXAMPLES", "10"))

_CRASHED = re.compile(r" ERROR +csms\.api api\.crashed ")

CHECKS = {
    "positive_data_acceptance": {"enabled": False},
    "ignored_auth": {"enabled": False},
    "use_after_free": {"enabled": False},
    "ensure_resource_availability": {"enabled": False},
}


def _document_says_what_the_api_answers(doc: dict) -> None:
    """What schemathesis found wrong in the document the first time (regression checks, no luck needed)."""
    ops = {(m.upper(), p): op for p, ms in doc["paths"].items() for m, op in ms.items()}
    for (method, path), op in ops.items():
        assert "422" not in op["responses"], (method, path)  # refused requests are answered 400
        (error,) = op["responses"]["4XX"]["content"].values()  # text/plain for /metrics, which answers no 4xx
        assert error["schema"]["$ref"].endswith("/ErrorEnvelope"), (method, path)
    assert "text/plain" in ops["GET", "/metrics"]["responses"]["200"]["content"]
    assert {"200", "201"} <= set(ops["POST", "/api/charge-points"]["responses"])  # 200: already registered
    assert {"200", "201"} <= set(ops["PUT", "/api/id-tags/{id_tag}"]["responses"])  # 201: created
    assert doc["components"]["schemas"]["ErrorEnvelope"]["required"] == ["success", "message"]


def test_schemathesis_finds_no_5xx_and_every_answer_is_documented(csms):
    _document_says_what_the_api_answers(httpx.get(f"{csms.http}/openapi.json", timeout=30).json())
    token = csms.admin["Authorization"].removeprefix("Bearer ")
    run = subprocess.run(
        [sys.executable, "-m", "tests.e2e.test_schemathesis", csms.http, token],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    assert "operations=" in run.stdout, run.stdout
    assert not _CRASHED.search(csms.log())  # the message, not generated data that echoes "api.crashed"


def test_a_nul_character_is_refused_with_the_envelope_not_a_500(csms):
    """schemathesis' find (at 100 examples): PostgreSQL text cannot hold U+0000, and psycopg's DataError was a 500."""
    requests = [
        ("GET", "/api/stations/a%00b", None),
        ("DELETE", "/api/id-tags/a%00", None),
        ("GET", "/api/connectors?chargePointIdPrefix=a%00", None),
        ("GET", "/api/transactions?chargePointIdPrefix=%00", None),
        ("POST", "/api/ChargingSession/stop-charging-session", {"sessionId": "a\x00"}),
        ("POST", "/api/Payments/Cancel", {"reservationId": "\x00"}),
        (
            "POST",
            "/api/ChargingSession/start-charging-session",
            {"chargingStationId": "S", "connectorId": 1, "chargeTagId": "T\x00", "chargingTariff": 0.3},
        ),
    ]
    with httpx.Client(base_url=csms.http, headers=csms.admin, timeout=30) as client:
        for method, url, body in requests:
            r = client.request(method, url, json=body)
            assert r.status_code == 400 and "NUL" in r.json()["message"], (method, url, r.status_code, r.text)
    assert not _CRASHED.search(csms.log())


def _envelope(ctx, response, case) -> None:
    """Every 4xx carries the API's envelope with a message (csms/api/envelope.py)."""
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict) and body.get("success") is False and body.get("message"), (
            f"{response.status_code} without the envelope: {response.text[:300]}"
        )


def _fuzz(operation, mode, headers: dict[str, str]) -> int:
    """One operation in one mode; returns how many requests were sent."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable

    sent = 0

    @settings(
        max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        nonlocal sent
        sent += 1
        case.call_and_validate(headers=headers, additional_checks=[_envelope])

    try:
        run()
    except Unsatisfiable:
        pass  # nothing in this operation can violate its schema (no parameters, or any string fits)
    return sent


def main(base_url: str, token: str) -> int:
    import schemathesis
    from schemathesis import GenerationMode

    config = schemathesis.Config.from_dict({"base-url": base_url, "checks": CHECKS})
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config, timeout=30)
    operations = [result.ok() for result in schema.get_all_operations()]
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    sent = 0
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                sent += _fuzz(operation, mode, headers)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - gathered, reported below
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    print(
        f"schemathesis {schemathesis.__version__} operations={len(operations)} requests={sent} "
        f"examples_per_operation_and_mode={EXAMPLES} failing={len(failures)}"
    )
    print("\n\n".join(failures))
    ok = not failures and len(operations) >= 25 and sent >= 2 * len(operations)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
