"""Logging set-up: `event key=value ...` lines, or JSON lines with --log-format json."""

from __future__ import annotations

import json
import logging
import re
import sys

__all__ = ["setup_logging", "escape", "SafeTextFormatter"]

# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators: a charge
# point id, an idTag or a vendor name holding one must not start a forged log line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape(text: str) -> str:
    """`text` with every control character written as a visible escape (\\n, \\x1b, \\u2028)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class SafeTextFormatter(logging.Formatter):
    """One record, one line: the message (which carries what clients sent) is escaped; a
    traceback, added after it by the formatter itself, keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
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
