"""A hypothesis fuzzer of the REST API, driven by its own OpenAPI document (issue 11), bounded for CI.

schemathesis would do this with more cleverness; it is not a dependency here, so this walks
`/openapi.json` itself: every operation with odd path parameters, query parameters and JSON bodies
(the schema's own property names with values of any type, unknown keys, non-objects). Never a 5xx;
every 4xx is the envelope `{"success": false, "message": ...}` with a message.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.server import start_csms

EXAMPLES = 200
_SKIP = {"/metrics", "/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("apifuzz")
    proc = start_csms(f"sqlite:///{workdir / 'csms.db'}", workdir, ["--allow-unknown-chargers"])
    try:
        with httpx.Client(base_url=proc.http, headers=proc.admin, timeout=30) as client:
            yield proc, client, client.get("/openapi.json").json()
    finally:
        proc.stop()


def _operations(doc: dict) -> list[tuple[str, str, dict]]:
    ops = []
    for path, methods in doc["paths"].items():
        if path in _SKIP or path.startswith("/ui"):
            continue
        for method, op in methods.items():
            if method in ("get", "post", "put", "delete", "patch"):
                ops.append((method.upper(), path, op))
    return sorted(ops, key=lambda o: (o[1], o[0]))


def _body_fields(doc: dict, op: dict) -> list[str]:
    schema = (op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {}))
    ref = schema.get("$ref")
    if ref:
        schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return sorted(schema.get("properties", {}))


_value = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False, allow_infinity=False),  # JSON has no inf
    st.text(max_size=30), st.sampled_from(["not-a-date", "2026-01-01T00:00:00Z", "", "\u202e\U0001f600", "x" * 500]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
_segment = st.one_of(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#"),
                             min_size=1, max_size=20),
                     st.integers(min_value=-(2**70), max_value=2**70).map(str), st.just("1"))


@st.composite
def _requests(draw, doc: dict):
    method, path, op = draw(st.sampled_from(_operations(doc)))
    url = re.sub(r"\{[^}]+\}", lambda _m: quote(draw(_segment), safe=""), path)
    params = {p["name"]: draw(_value.map(str)) for p in op.get("parameters", [])
              if p.get("in") == "query" and draw(st.booleans())}
    body = None
    if method in ("POST", "PUT", "PATCH"):
        fields = _body_fields(doc, op)
        body = draw(st.one_of(
            st.fixed_dictionaries({}, optional={f: _value for f in fields}),
            st.dictionaries(st.text(max_size=8), _value, max_size=4),
            _value,
        ))
    return method, url, params, body


def test_every_operation_answers_without_5xx_and_4xx_carry_the_envelope(api):
    proc, client, doc = api
    assert len(_operations(doc)) > 10

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(request=_requests(doc))
    def check(request):
        method, url, params, body = request
        r = client.request(method, url, params=params, json=body) if body is not None or method != "GET" \
            else client.request(method, url, params=params)
        assert r.status_code < 500, (method, url, params, body, r.status_code, r.text[:500])
        if r.status_code >= 400:
            envelope = r.json()
            assert envelope["success"] is False and envelope["message"], (method, url, r.text[:500])

    check()
    assert "api.crashed" not in proc.log()
