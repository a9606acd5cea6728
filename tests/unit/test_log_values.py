"""Log lines are `key=value` fields: a value a client sent cannot add fields of its own."""

from __future__ import annotations

import json
import logging

from csms.logs import SafeTextFormatter, _JsonFormatter


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("csms.test", logging.WARNING, __file__, 1, msg, args, None)


def test_values_with_spaces_equals_or_quotes_are_quoted_and_the_rest_left_alone():
    record = _record(
        "id_tag.not_accepted charge_point=%s id_tag=%s status=%s%s n=%d",
        "CP1",
        'X status=Accepted"',
        "Invalid",
        " connector=1",
        5,
    )
    text = SafeTextFormatter("%(message)s").format(record)
    assert text == 'id_tag.not_accepted charge_point=CP1 id_tag="X status=Accepted\\"" status=Invalid connector=1 n=5'
    assert record.args == ("CP1", 'X status=Accepted"', "Invalid", " connector=1", 5)  # other handlers see it unchanged
    assert SafeTextFormatter("%(message)s").format(_record("a=%s b=%r", "X\u00a0Y", "p q")) == "a=\"X\u00a0Y\" b='p q'"


def test_json_lines_quote_the_same_way():
    line = json.loads(_JsonFormatter().format(_record("id_tag=%s status=%s", "X status=Accepted", "Invalid")))
    assert line["msg"] == 'id_tag="X status=Accepted" status=Invalid'
