"""Field logs: a real charger's OCPP conversation, imported, replayed against a CSMS, explained.

`frames.py` is the frame-log format every part shares (`unstuck-sim import` writes it,
`unstuck-sim replay` plays it, `unstuck-scenarios explain` judges it); `importers.py` reads the
formats sites have; `player.py` plays the chargers' side against a CSMS.
"""

from __future__ import annotations

from .frames import (
    FRAMES_VERSION,
    FrameLogError,
    FrameLogHeader,
    FrameLogWriter,
    FrameRecord,
    LinkRecord,
    read_frame_log,
)

__all__ = [
    "FRAMES_VERSION",
    "FrameLogError",
    "FrameLogHeader",
    "FrameRecord",
    "FrameLogWriter",
    "LinkRecord",
    "read_frame_log",
]
