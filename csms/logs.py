"""Logging set-up: `event key=value ...` lines, or JSON lines with --log-format json."""

from __future__ import annotations

import json
import logging
import re
import sys
from functools import lru_cache
from typing import Any

__all__ = ["setup_logging", "escape", "quote_value", "SafeTextFormatter"]

# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators: a charge
# point id, an idTag or a vendor name holding one must not start a forged log line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape(text: str) -> str:
    """`text` with every control character written as a visible escape (\\n, \\x1b, \\u2028)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


# One %-conversion of a log message: its type letter, or "%" for a literal "%%"; "*" widths take an argument.
_CONVERSION = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.)")


@lru_cache(maxsize=4096)
def _value_slots(msg: str) -> tuple[int, ...] | None:
    """The argument indexes of a message's `key=%s` conversions; None when they cannot be told apart
    (named or `*` conversions)."""
    slots: list[int] = []
    arg = 0
    for m in _CONVERSION.finditer(msg):
        if m.group(3) == "%":
            continue
        if m.group(0).startswith("%(") or "*" in (m.group(1) or "", m.group(2) or ""):
            return None
        if m.group(3) == "s" and msg[m.start() - 1 : m.start()] == "=":
            slots.append(arg)
        arg += 1
    return tuple(slots)


def quote_value(value: Any) -> Any:
    """A `key=value` value as one field: quoted (with its quotes and backslashes escaped) when it holds a
    space, `=` or a quote, so that an idTag such as `X status=Accepted` cannot add fields to a log line.
    Control characters need no quotes: `escape` writes them visibly (\\n), not as a break."""
    if isinstance(value, int | float) or value is None:
        return value
    text = str(value)
    if not any(ch in '="' or (ch.isspace() and not _CONTROL.match(ch)) for ch in text):
        return value
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quoted_args(record: logging.LogRecord) -> Any:
    """record.args with each `key=%s` value passed through `quote_value` (the values clients send reach the
    log that way: an idTag, a vendor name); other conversions, e.g. a trailing `%s` fragment, are left."""
    args = record.args
    if not isinstance(args, tuple) or not args or not isinstance(record.msg, str):
        return args
    slots = _value_slots(record.msg)
    if not slots:
        return args
    out = list(args)
    for i in slots:
        if i < len(out):
            out[i] = quote_value(out[i])
    return tuple(out)


class _QuotingFormatter(logging.Formatter):
    """Formats a record with its `key=%s` values quoted (`quote_value`), leaving the record as it was for
    other handlers."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.args
        record.args = _quoted_args(record)
        try:
            return self.format_quoted(record)
        finally:
            record.args = saved

    def format_quoted(self, record: logging.LogRecord) -> str:
        return super().format(record)


class SafeTextFormatter(_QuotingFormatter):
    """One record, one line: the message (which carries what clients sent) is escaped; a
    traceback, added after it by the formatter itself, keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)


class _JsonFormatter(_QuotingFormatter):
    def format_quoted(self, record: logging.LogRecord) -> str:
        out = {
            "at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(SafeTextFormatter("%(asctime)s %(levelname)-7s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party loggers stay at WARNING whatever --log-level says: at DEBUG, hpack and h2 print request
    # headers (Authorization: Bearer ...), and tokens are never logged.
    for noisy in _THIRD_PARTY:
        logging.getLogger(noisy).setLevel(logging.WARNING)


_THIRD_PARTY = (
    "hypercorn.access",
    "hypercorn.error",
    "trio-websocket",
    "trio_websocket",
    "hpack",
    "h2",
    "h11",
    "wsproto",
    "httpx",
    "httpcore",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "asyncio",
    "multipart",
)
