"""The frame log: what chargers and a CSMS said to each other, frame by frame, in time order.

A JSON-lines file, version 2 of the simulator's traces (version 1 is `simulator.trace`: a run of
our own fleet, rebuilt from its decisions). The first line is the header:

    {"kind": "header", "version": 2, "format": "frames", "epoch": "2026-03-02T03:12:05.120Z",
     "source": {"file": "site-x.jsonl", "format": "jsonl"}, "charge_points": {"ABB-TERRA-0042": "1.6"},
     "frames": 1234, "skipped": 0}

`epoch` is the wall-clock time of `t` = 0; `charge_points` maps every charger id (kept exactly as
the log spells it) to its OCPP version ("1.6" or "2.0.1", from the actions it used). Then one
record per line, sorted by `t` (seconds since `epoch`, float):

    {"t": 0.0, "cp": "ABB-TERRA-0042", "kind": "out", "frame": [2, "19", "StatusNotification", {...}]}
    {"t": 0.2, "cp": "ABB-TERRA-0042", "kind": "in", "frame": [3, "19", {}]}
    {"t": 95.0, "cp": "ABB-TERRA-0042", "kind": "link", "event": "disconnect", "why": "no frames for 900 s"}

`out` is a frame the charger sent, `in` one it received (the CSMS sent it); `frame` is the
OCPP-J array as the log held it. `link` records say when the charger's connection went
(`disconnect`) and came back (`connect`), when the log says so or an importer infers it.
The reader streams: a log of any size is read in constant memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from simulator.errors import TraceError

__all__ = [
    "FRAMES_VERSION",
    "FrameLogError",
    "FrameLogHeader",
    "FrameRecord",
    "LinkRecord",
    "FrameLogWriter",
    "read_frame_log",
]

FRAMES_VERSION = 2
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class FrameLogError(TraceError):
    """A frame log that cannot be read: says which line and why."""


@dataclass(frozen=True)
class FrameLogHeader:
    epoch: str  # ISO 8601 UTC of t = 0
    charge_points: dict[str, str]  # id -> OCPP version
    source: dict[str, Any] = field(default_factory=dict)
    frames: int = 0
    skipped: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "header",
            "version": FRAMES_VERSION,
            "format": "frames",
            "epoch": self.epoch,
            "source": self.source,
            "charge_points": self.charge_points,
            "frames": self.frames,
            "skipped": self.skipped,
        }


@dataclass(frozen=True)
class FrameRecord:
    t: float
    cp: str
    direction: str  # "out": the charger sent it; "in": the CSMS sent it
    frame: list[Any]  # the OCPP-J array: [2, id, action, payload] | [3, id, payload] | [4, id, code, text, details]

    def to_json(self) -> dict[str, Any]:
        return {"t": round(self.t, 4), "cp": self.cp, "kind": self.direction, "frame": self.frame}


@dataclass(frozen=True)
class LinkRecord:
    t: float
    cp: str
    event: str  # "connect" | "disconnect"
    why: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": round(self.t, 4), "cp": self.cp, "kind": "link", "event": self.event}
        if self.why:
            out["why"] = self.why
        return out


class FrameLogWriter:
    """Writes the header, then records in the order given (the caller sorts)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = open(self.path, "w", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115

    def header(self, header: FrameLogHeader) -> None:
        self._line(header.to_json())

    def record(self, record: FrameRecord | LinkRecord) -> None:
        self._line(record.to_json())

    def _line(self, obj: dict[str, Any]) -> None:
        self._file.write(_dumps(obj))
        self._file.write("\n")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> FrameLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _header(path: Path, obj: Any) -> FrameLogHeader:
    if not isinstance(obj, dict) or obj.get("kind") != "header":
        raise FrameLogError(f"{path}:1: no header: this is not a frame log (make one with `unstuck-sim import`)")
    if obj.get("version") != FRAMES_VERSION or obj.get("format") != "frames":
        raise FrameLogError(f"{path}:1: a version-{obj.get('version')} trace, not a version-{FRAMES_VERSION} frame log")
    cps = obj.get("charge_points")
    if not isinstance(obj.get("epoch"), str) or not isinstance(cps, dict):
        raise FrameLogError(f"{path}:1: the header needs an epoch and its charge_points")
    return FrameLogHeader(
        obj["epoch"], dict(cps), dict(obj.get("source") or {}), int(obj.get("frames", 0)), int(obj.get("skipped", 0))
    )


def _record(path: Path, line_no: int, obj: Any) -> FrameRecord | LinkRecord:
    where = f"{path}:{line_no}"
    if not isinstance(obj, dict):
        raise FrameLogError(f"{where}: not a JSON object")
    t, cp, kind = obj.get("t"), obj.get("cp"), obj.get("kind")
    if not isinstance(t, int | float) or not isinstance(cp, str) or not cp:
        raise FrameLogError(f"{where}: a record needs a number t and a charge point id cp")
    if kind in ("out", "in"):
        frame = obj.get("frame")
        if not isinstance(frame, list) or not frame or frame[0] not in (2, 3, 4):
            raise FrameLogError(f"{where}: frame is not an OCPP-J array")
        return FrameRecord(float(t), cp, kind, frame)
    if kind == "link" and obj.get("event") in ("connect", "disconnect"):
        return LinkRecord(float(t), cp, obj["event"], str(obj.get("why") or ""))
    raise FrameLogError(f"{where}: unknown record kind {kind!r}")


def read_frame_log(path: str | Path) -> tuple[FrameLogHeader, Iterator[FrameRecord | LinkRecord]]:
    """The header, and the records streamed in file order; FrameLogError names the line that is wrong."""
    p = Path(path)
    f = open(p, encoding="utf-8")  # noqa: SIM115 - closed by the iterator
    try:
        first = f.readline()
        if not first.strip():
            raise FrameLogError(f"{p}: empty file")
        try:
            header = _header(p, json.loads(first))
        except ValueError:
            raise FrameLogError(f"{p}:1: not a JSON line") from None
    except BaseException:
        f.close()
        raise

    def records() -> Iterator[FrameRecord | LinkRecord]:
        with f:
            for line_no, line in enumerate(f, 2):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    raise FrameLogError(f"{p}:{line_no}: not a JSON line") from None
                yield _record(p, line_no, obj)

    return header, records()
