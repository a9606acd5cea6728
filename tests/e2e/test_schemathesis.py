"""schemathesis against the REST API's own OpenAPI document on a real `csms serve` (issue 11), bounded for CI.

Every operation of `/openapi.json`, with schema-valid (positive) and schema-violating (negative)
requests, as an admin. The checks, schemathesis' own unless said:
- `not_a_server_error`: never a 5xx;
- the envelope (ours, `_envelope`): every 4xx is `{"success": false, "message": "<not empty>"}`,
  checked from the body itself so that it holds even if the document were wrong;
- `status_code_conformance`, `content_type_conformance`, `response_schema_conformance`: the answer
  is one the document declares (4XX/5XX declared as the envelope, so this checks it too);
- `negative_data_rejection`: a request the schema forbids is refused with a 4xx.
Left out, with the reason:
- `positive_data_acceptance` (a schema-valid request must be accepted): the API checks more than
  its schema says on purpose, with messages a person can act on (charge point ids of printable
  ASCII, passwords of 16 to 40 characters, `verdict` one of free/busy/offline, id tags of printable
  characters), and most generated ids name nothing (404) or a state that refuses (409);
- `ignored_auth`: the document declares no security scheme (a bearer token is checked by a
  dependency), so schemathesis has nothing to test; `tests/e2e/test_auth*.py` cover tokens;
- the stateful checks (`use_after_free`, `ensure_resource_availability`) and the stateful phase:
  the document has no links between operations.

schemathesis' pytest integration (`schemathesis.pytest.from_fixture` + `@schema.parametrize()`)
fails on pytest 9.2 (it sets `Function._nodeid`, which pytest removed), so each operation's
strategy (`APIOperation.as_strategy`) is driven by a plain hypothesis `@given` here, derandomized
and bounded like the other fuzzers; all operations' failures are gathered and reported together.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

EXAMPLES = 10  # per operation and per mode: 26 operations x (positive + negative), about 400 requests

CHECKS = {
    "positive_data_acceptance": {"enabled": False},
    "ignored_auth": {"enabled": False},
    "use_after_free": {"enabled": False},
    "ensure_resource_availability": {"enabled": False},
}


def _envelope(ctx, response, case) -> None:
    """Every 4xx carries the API's envelope with a message (csms/api/envelope.py)."""
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict) and body.get("success") is False and body.get("message"), \
            f"{response.status_code} without the envelope: {response.text[:300]}"


def _load(proc):
    config = schemathesis.Config.from_dict({"base-url": proc.http, "checks": CHECKS})
    return schemathesis.openapi.from_url(f"{proc.http}/openapi.json", config=config, timeout=30)


def _fuzz(operation, mode: GenerationMode, headers: dict[str, str]) -> int:
    """Run one operation in one mode; returns how many requests were sent."""
    sent = 0

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
              derandomize=True, database=None)
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


def test_schemathesis_finds_no_5xx_and_every_answer_is_documented(csms):
    schema = _load(csms)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25, [op.label for op in operations]
    failures: list[str] = []
    sent = 0
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                sent += _fuzz(operation, mode, csms.admin)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - gathered, reported below
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, f"{len(failures)} failing:\n\n" + "\n\n".join(failures)
    assert sent >= 2 * len(operations)
    assert "api.crashed" not in csms.log()
