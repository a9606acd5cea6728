"""How the harness asks a CSMS (base.py: the interface; unstuck_rest.py: ours)."""

from .base import (
    BUSY,
    FREE,
    OFFLINE,
    UNKNOWN,
    CsmsAdapter,
    NotSupportedError,
    StartResult,
    StoredSession,
    StoredTransaction,
    UnlockResult,
    Verdict,
)

__all__ = [
    "BUSY",
    "FREE",
    "OFFLINE",
    "UNKNOWN",
    "CsmsAdapter",
    "NotSupportedError",
    "StartResult",
    "StoredSession",
    "StoredTransaction",
    "UnlockResult",
    "Verdict",
]
