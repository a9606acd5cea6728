"""The start-up schema check's rules (csms.db.schema.decide, match_legacy), without a database."""

from __future__ import annotations

import pytest

from csms.db.schema import Action, Plan, decide, match_legacy, missing_columns, refusal_message

KNOWN = ["0001", "0002", "0003"]


def plan(current=None, has_tables=True, legacy=None, upgrade_older=True) -> Plan:
    return decide(
        current=current,
        has_tables=has_tables,
        legacy_match=legacy,
        known=KNOWN,
        head="0003",
        upgrade_older=upgrade_older,
    )


@pytest.mark.parametrize(
    ("kwargs", "action", "current", "adopt"),
    [
        (dict(has_tables=False), Action.CREATE, None, False),
        (dict(current="0003"), Action.NOTHING, "0003", False),
        (dict(current="0001"), Action.UPGRADE, "0001", False),
        (dict(current="0001", upgrade_older=False), Action.REFUSE_OLDER, "0001", False),
        (dict(current="0009"), Action.REFUSE_NEWER, "0009", False),
        (dict(current="0009", upgrade_older=False), Action.REFUSE_NEWER, "0009", False),
        (dict(legacy="0002"), Action.UPGRADE, "0002", True),
        (dict(legacy="0003"), Action.NOTHING, "0003", True),
        (dict(legacy="0001", upgrade_older=False), Action.REFUSE_OLDER, "0001", True),
        (dict(legacy=None), Action.REFUSE_LEGACY, None, True),
    ],
    ids=[
        "empty",
        "at-head",
        "older",
        "older-refused",
        "newer",
        "newer-even-refusing",
        "legacy-older",
        "legacy-at-head",
        "legacy-refused",
        "legacy-unmatched",
    ],
)
def test_decide(kwargs, action, current, adopt):
    p = plan(**kwargs)
    assert (p.action, p.current, p.head, p.adopt) == (action, current, "0003", adopt)


def test_a_version_row_wins_over_tables_even_without_them():
    # alembic_version says 0002: that is the truth, whatever tables there are.
    assert plan(current="0002", has_tables=False).action is Action.UPGRADE


REVISIONS = [
    ("0001", {"a": frozenset({"id", "x"})}),
    ("0002", {"a": frozenset({"id", "x"}), "b": frozenset({"id"})}),
    ("0003", {"a": frozenset({"id", "x", "y"}), "b": frozenset({"id"})}),
]


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        ({"a": {"id", "x"}}, "0001"),
        ({"a": {"id", "x"}, "b": {"id"}}, "0002"),
        ({"a": {"id", "x", "y"}, "b": {"id"}}, "0003"),
        ({"a": {"id", "x", "y", "extra"}, "b": {"id"}, "other": {"q"}}, "0003"),  # extras do not hold it back
        ({"a": {"id", "x", "y"}}, "0001"),  # 0003's column without 0002's table: the newest it fully holds
        ({"a": {"id"}}, None),  # not even the first revision
        ({}, None),
    ],
)
def test_match_legacy_finds_the_newest_revision_whose_tables_and_columns_are_all_there(present, expected):
    assert match_legacy(present, REVISIONS) == expected


def test_refusals_say_what_to_do_and_name_both_revisions():
    newer = refusal_message(plan(current="0009"), "sqlite:///x.db")
    assert "0009" in newer and "0003" in newer and "newer csms" in newer
    older = refusal_message(plan(current="0001", upgrade_older=False), "sqlite:///x.db")
    assert "0001" in older and "0003" in older and "csms db upgrade --db 'sqlite:///x.db'" in older


def test_missing_columns_names_what_a_database_at_head_lacks():
    expected = {"a": {"id", "x", "y"}, "b": {"id"}}
    assert missing_columns({"a": {"id", "x", "y", "extra"}, "b": {"id"}}, expected) == {}
    assert missing_columns({"a": {"id", "x"}}, expected) == {"a": ["y"], "b": ["id"]}
