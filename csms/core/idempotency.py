"""Idempotency-Key on REST commands: what a request with a key gets, decided from the key's stored row.

A client that did not hear the answer to a start (a timeout, a node that died, a 502 from the balancer)
sends it again with the same key; the command must not run twice, on this node or another. The first
request claims the key and runs; one with the same key and the same request gets the stored answer
again, or 409 while the first still runs; the same key on a different request is the client's mistake
(422). Pure: the shell (csms.api.idempotency) reads and writes the rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum

__all__ = ["KEY_HEADER", "Claim", "Outcome", "check_key", "fingerprint", "decide", "kept_answer", "stored_key"]

KEY_HEADER = b"idempotency-key"
_MAX_KEY = 200


class Outcome(Enum):
    RUN = "run"  # the key is ours now: run the command, then store its answer
    REPLAY = "replay"  # it ran: the stored answer again
    IN_PROGRESS = "in_progress"  # it runs now (or its node died while it ran): 409, never a second run
    MISMATCH = "mismatch"  # the key was used for another request: 422


@dataclass(frozen=True)
class Claim:
    """The key's row as another request left it."""

    fingerprint: str
    done: bool


def check_key(value: str) -> str | None:
    """Why a header value cannot be a key (None: it can): 1 to 200 visible ASCII characters."""
    if not 1 <= len(value) <= _MAX_KEY:
        return f"Idempotency-Key must be 1 to {_MAX_KEY} characters"
    if not all(33 <= ord(c) <= 126 for c in value):
        return "Idempotency-Key must be visible ASCII characters (a UUID, say)"
    return None


def fingerprint(method: str, path: str, caller: str, body: bytes) -> str:
    """What makes two requests the same: method, path, who asks (their credentials' hash) and the body."""
    h = hashlib.sha256()
    for part in (method.encode(), path.encode(), hashlib.sha256(caller.encode()).digest(), body):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def decide(existing: Claim | None, mine: str) -> Outcome:
    """The outcome for a request with fingerprint `mine`, given the key's row (None: this request claimed it)."""
    if existing is None:
        return Outcome.RUN
    if existing.fingerprint != mine:
        return Outcome.MISMATCH
    return Outcome.REPLAY if existing.done else Outcome.IN_PROGRESS


def kept_answer(status: int) -> bool:
    """Whether an answer settles the key. Not those given before the command could begin: a refused role
    (403) or credentials (401), a throttle (429) — a retry may run. Everything else does: a timeout (504),
    because the charger may still act on the command, and a 503, because the database can fail after the
    charger was asked (a retry would ask it again)."""
    return status not in (401, 403, 429)


def stored_key(caller: str, key: str) -> str:
    """The key as stored: each caller's keys are its own (another caller's same key is another request)."""
    return hashlib.sha256(caller.encode()).hexdigest()[:16] + ":" + key
