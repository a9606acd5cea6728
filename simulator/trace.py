"""The JSONL trace: every frame, state change, status, transaction and fault, timestamped.

One JSON object per line. `t` is seconds of simulation time since the fleet
started (the header holds the wall-clock epoch), `cp` the charge point id,
`kind` one of:

| kind      | written when                                   | main fields                          |
|-----------|------------------------------------------------|--------------------------------------|
| header    | first line                                     | version, epoch, spec, run            |
| identity  | a charge point is built                        | vendor, model, serial, firmware      |
| session   | the driver decides a car visit                 | connector, n, gap, duration, ...     |
| fault     | a fault fires                                  | fault, connector, index, params      |
| state     | a connector's physical state changes           | connector, event, before, after      |
| status    | a StatusNotification is queued or suppressed   | connector, status, sent, why, link   |
| tx        | a transaction starts/stops/is lost/is answered,| connector, event, local_id, ...      |
|           | or a RemoteStartTransaction is rejected        | connector, event, tag, why           |
| link      | connect, close, connect failure, queue dropped | event, why                           |
| in / out  | a frame is received / sent                     | frame (the raw OCPP-J text)          |
| error     | a call failed or a task crashed                | what, action, why                    |
| skipped   | a follow-up no longer applied (the car moved)  | what, why                            |

The writer is synchronous on purpose: lines go to a buffered file in the order
things happened in the one trio thread, without a task or channel per record.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import TraceError

__all__ = ["TRACE_VERSION", "TraceWriter", "read_trace", "decisions", "DECISION_KINDS"]

TRACE_VERSION = 1
# What the charge points decided and did, as opposed to what the link let through: a status
# queued while the WebSocket happens to be down is dropped, so `status` is not in here.
DECISION_KINDS = frozenset({"identity", "session", "fault", "state"})
# Left out of `decisions`: times, what the CSMS chose (ids), and energy (depends on exact timing).
_VOLATILE = frozenset({"t", "transaction_id", "register_wh", "energy_wh", "meter"})
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class TraceWriter:
    """Appends records to a JSONL file and/or keeps them in memory (`records`)."""

    def __init__(self, path: str | Path | None = None, *, keep: bool = False, frames: bool = True) -> None:
        self.path = Path(path) if path is not None else None
        self.frames = frames and (path is not None or keep)
        self.records: list[dict[str, Any]] | None = [] if keep else None
        self.now: Callable[[], float] = lambda: 0.0
        self._file: IO[str] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115

    @property
    def enabled(self) -> bool:
        return self._file is not None or self.records is not None

    def write(self, cp: str | None, kind: str, **fields: Any) -> None:
        if not self.enabled:
            return
        record = {"t": round(self.now(), 4), "cp": cp, "kind": kind, **fields}
        if self.records is not None:
            self.records.append(record)
        if self._file is not None:
            self._file.write(_dumps(record))
            self._file.write("\n")

    def frame_hook(self, cp: str) -> Callable[[str, str], None] | None:
        """The `trace=` callback for an OcppConnection, or None when frames are not kept."""
        if not self.frames:
            return None

        def hook(direction: str, text: str) -> None:
            self.write(cp, direction, frame=text)

        return hook

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_trace(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a trace file, header first; TraceError if it is not one."""
    with open(path, encoding="utf-8") as f:
        first = True
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                # The last line of a run that was killed may be cut short.
                raise TraceError(f"{path}:{line_no}: not a JSON line") from None
            if first:
                if record.get("kind") != "header" or record.get("version") != TRACE_VERSION:
                    raise TraceError(f"{path}: no version-{TRACE_VERSION} header on the first line")
                first = False
            yield record
    if first:
        raise TraceError(f"{path}: empty trace")


def decisions(records: Iterable[dict[str, Any]]) -> dict[tuple[str, int | None], list[tuple[Any, ...]]]:
    """The charge points' own decisions, per (cp, connector), without times or CSMS-given ids.

    Two runs with the same seed against CSMSs that answer alike give equal
    results; this is what the determinism test and `replay` compare.
    """
    out: dict[tuple[str, int | None], list[tuple[Any, ...]]] = {}
    for r in records:
        if r.get("kind") not in DECISION_KINDS:
            continue
        key = (r["cp"], r.get("connector"))
        out.setdefault(key, []).append(
            tuple(sorted((k, _freeze(v)) for k, v in r.items() if k not in _VOLATILE and k != "cp"))
        )
    return out


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value
