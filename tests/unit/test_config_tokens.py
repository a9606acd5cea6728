"""API tokens: ROLE:TOKEN and ROLE:NAME:TOKEN, the tokens file, names, never a token in a repr; log escaping."""

from __future__ import annotations

import logging

import pytest

from csms.config import ApiToken, check_tokens, parse_tokens, parse_tokens_file
from csms.logs import SafeTextFormatter, escape


def test_role_token_is_named_after_its_role_and_names_are_kept():
    tokens = parse_tokens(["admin:first-secret-1", "user:bob:second-secret", "admin:ops.alice@site:third-secret"])
    assert [(t.role, t.name) for t in tokens] == [("admin", "admin"), ("user", "bob"), ("admin", "ops.alice@site")]


def test_a_token_never_shows_in_a_repr():
    token = ApiToken("admin", "super-secret-value", "alice")
    assert "super-secret-value" not in repr(token) and "alice" in repr(token)


@pytest.mark.parametrize("item", ["root:abcdefgh", "admin:short", "admin:bad name:abcdefghij", "a:b:c:d", "admin"])
def test_bad_tokens_are_refused_without_echoing_the_secret(item):
    with pytest.raises(ValueError) as ei:
        parse_tokens([item])
    assert "abcdefghij" not in str(ei.value)


def test_tokens_file(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("# site tokens\n\nadmin:alice:alice-token-123\nuser:bob-token-4567\n")
    tokens = parse_tokens_file(path)
    assert [(t.role, t.name, t.token) for t in tokens] == [
        ("admin", "alice", "alice-token-123"),
        ("user", "user", "bob-token-4567"),
    ]
    path.write_text("admin:alice:alice-token-123\nadmin:alice\n")
    with pytest.raises(ValueError, match="line 2"):
        parse_tokens_file(path)


def test_the_same_secret_twice_is_refused():
    with pytest.raises(ValueError, match="same secret"):
        check_tokens(parse_tokens(["admin:a:same-secret-1", "user:b:same-secret-1"]))


def test_log_lines_cannot_be_forged():
    assert escape("CP1\nFORGED 2026 ERROR x\r\x1b[2J\u2028") == "CP1\\nFORGED 2026 ERROR x\\r\\x1b[2J\\u2028"
    record = logging.LogRecord("csms", logging.INFO, __file__, 1, "connected charge_point=%s", ("CP\nFAKE",), None)
    line = SafeTextFormatter("%(levelname)s %(message)s").format(record)
    assert line == "INFO connected charge_point=CP\\nFAKE" and "\n" not in line
