"""The id tag rules of csms.core.id_tags: decide, and the CSV and REST field checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from csms.core.id_tags import (
    CsvError,
    IdTagInfo,
    IdTagRecord,
    IdTagStatus,
    decide,
    match_key,
    parse_csv,
    record_from,
)

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
S = IdTagStatus


def tag(status=S.ACCEPTED, expiry=None, parent=None):
    return IdTagRecord("TAG1", status, expiry, parent)


@pytest.mark.parametrize("accept_unknown, status", [(False, S.INVALID), (True, S.ACCEPTED)])
def test_unknown_tags(accept_unknown, status):
    assert decide(None, now=NOW, accept_unknown=accept_unknown) == IdTagInfo(status)
    # Nothing is known about an unknown tag: it is never ConcurrentTx.
    assert decide(None, now=NOW, accept_unknown=accept_unknown, in_another_transaction=True) == IdTagInfo(status)


@pytest.mark.parametrize("status", [S.BLOCKED, S.EXPIRED, S.INVALID])
def test_listed_statuses_are_answered_as_they_are(status):
    assert decide(tag(status), now=NOW, accept_unknown=True).status is status
    assert decide(tag(status), now=NOW, accept_unknown=True, in_another_transaction=True).status is status


def test_expiry_boundary():
    assert decide(tag(expiry=NOW), now=NOW, accept_unknown=False).status is S.EXPIRED
    info = decide(tag(expiry=NOW + timedelta(seconds=1), parent="GROUP"), now=NOW, accept_unknown=False)
    assert info.status is S.ACCEPTED
    assert info.payload() == {"status": "Accepted", "expiryDate": "2026-01-01T12:00:01Z", "parentIdTag": "GROUP"}


def test_concurrent_transaction():
    assert decide(tag(), now=NOW, accept_unknown=False, in_another_transaction=True).status is S.CONCURRENT_TX
    # Expired wins over ConcurrentTx: the tag could not start anyway.
    expired = tag(expiry=NOW - timedelta(days=1))
    assert decide(expired, now=NOW, accept_unknown=False, in_another_transaction=True).status is S.EXPIRED


def test_record_from_normalises_and_refuses():
    r = record_from(" abc1 ", "Blocked", "2027-01-01T00:00:00Z", "grp")
    assert (r.id_tag, r.status, r.expiry_date, r.parent_id_tag) == (
        "ABC1",
        S.BLOCKED,
        datetime(2027, 1, 1, tzinfo=UTC),
        "GRP",
    )
    for args in [
        ("", "Accepted", None, None),
        ("X" * 21, "Accepted", None, None),
        ("T", "ConcurrentTx", None, None),
        ("T", "Maybe", None, None),
        ("T", "Accepted", "tomorrow", None),
        ("T\n", "Accepted", None, None),
    ]:
        with pytest.raises(ValueError):
            record_from(*args)


def test_parse_csv():
    text = "idTag,status,expiryDate,parentIdTag\nTAG1,Accepted,,\ntag2,Blocked,2027-01-01T00:00:00Z,GROUP\n\nTAG3,,,\n"
    rows = parse_csv(text)
    assert [(r.id_tag, r.status) for r in rows] == [("TAG1", S.ACCEPTED), ("TAG2", S.BLOCKED), ("TAG3", S.ACCEPTED)]
    assert rows[1].parent_id_tag == "GROUP"


@pytest.mark.parametrize(
    "text, line",
    [
        ("tag,status\nA,Accepted\n", "line 1"),
        ("idTag,colour\nA,red\n", "line 1"),
        ("idTag,status\nA,Accepted\nB,Lost\n", "line 3"),
        ("idTag,status\nA,Accepted\na,Blocked\n", "line 3"),
    ],
)
def test_parse_csv_names_the_bad_line(text, line):
    with pytest.raises(CsvError, match=line):
        parse_csv(text)


def test_match_key_folds_ascii_case_only():
    """The ConcurrentTx check folds in SQL (upper(), ASCII-only on SQLite): a Python-only fold ("ß" -> "SS")
    would let a tag match the list under one key and the open transactions under another."""
    assert match_key("GoodTag") == "GOODTAG"
    assert match_key("straße") == "STRAßE"
    assert match_key(" goodtag\u00a0") == " GOODTAG\u00a0"
