"""`unstuck-sim import`: a charger's field log, in the format the site has, turned into a frame log.

Why: a ticket arrives with the charger's OCPP log, not with our trace; the player and `explain`
read one format only (frames.py). Each reader here turns one format into entries (time, charger,
direction, frame or link event) and says which lines it could not read; `import_log` counts,
sorts and writes them.

Formats (`--format`):

* `jsonl` (default): one object per line, `{"time": ..., "chargePointId": ..., "from": "cp" | "csms",
  "frame": [2, "19", "StatusNotification", {...}]}`; `frame` may also be the frame's JSON text.
  Connection events: `{"time": ..., "chargePointId": ..., "event": "connect" | "disconnect", "why": ...}`.
* `frames`: `TIME [2,"19","StatusNotification",{...}]` or `TIME CHARGER-ID [...]`, one frame a line
  (without an id, `--cp ID` names the charger). A CALL's direction comes from its action (the
  charger's actions, `CP_ACTIONS`, vs the CSMS's; an unknown action is taken as the charger's, and
  DataTransfer, which either side may send, too); a CALLRESULT/CALLERROR goes the other way from
  the CALL with its message id. A result that answers no earlier CALL is skipped and counted.
* `ocpp-core-csv`: OCPP.Core's MessageLog table; lossy, see `import_csv`.
* `trace`: our own version-1 trace (simulator/trace.py): its `in`/`out` frame text and its
  `connected`/`closed` link records, so a scenario run can be replayed frame by frame.

Times: ISO 8601 with a zone (`Z`, `+01:00`) or without one, then taken as UTC; a number (a JSON
number, or digits in `frames`) is seconds since 1970, or milliseconds when above 1e11.

A line that cannot be read stops the import with `file:line: reason` (exit code 2), or with
`--skip-bad` is skipped and counted. Some lines are skipped and counted always, because they are
well formed but carry nothing to replay (an answer to no CALL; see `Bad.fatal`). Actions neither
OCPP 1.6 nor 2.0.1 define are kept and counted as unknown. Each charger's OCPP version is the one
its actions and payloads vote for (`TransactionEvent` is 2.0.1, `StartTransaction` 1.6, ...);
without a vote, 1.6. With `gap_seconds`, a charger silent for longer than that between two of its
records gets a `disconnect` N seconds after its last record and a `connect` before its next one
(and only the disconnect when it stays silent while other chargers still talk).

Memory is bounded: entries are sorted in runs spilled to temporary files (import_sort.py).
"""

from __future__ import annotations

import json
import re
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from heapq import heappop, heappush
from pathlib import Path
from typing import Any

from simulator.errors import ConfigError

from .frames import FrameLogHeader, FrameLogWriter, FrameRecord, LinkRecord
from .import_sort import RunSorter

__all__ = [
    "CP_ACTIONS",
    "CSMS_ACTIONS",
    "FORMATS",
    "V16_ACTIONS",
    "V201_ACTIONS",
    "Bad",
    "Entry",
    "FieldLogImportError",
    "ImportOptions",
    "ImportReport",
    "check_frame",
    "import_log",
    "parse_time",
    "read_entries",
]

from .import_common import (  # noqa: E402 - re-exported: the readers' shared vocabulary
    CP_ACTIONS,
    CSMS_ACTIONS,
    FORMATS,
    PENDING_CALLS,
    V16_ACTIONS,
    V16_ONLY,
    V201_ACTIONS,
    V201_ONLY,
    Bad,
    Entry,
    FieldLogImportError,
    ImportOptions,
    Reader,
    check_frame,
    frame_from_text,
    iso,
    not_json,
    parse_time,
    text_lines,
)
from .import_csv import read_ocpp_core_csv  # noqa: E402


def read_jsonl(path: Path, options: ImportOptions) -> Iterator[Entry | Bad]:
    """`{"time", "chargePointId", "from", "frame"}` and `{"time", "chargePointId", "event"}` lines."""
    for line_no, text in text_lines(path):
        if isinstance(text, Bad):
            yield text
        elif text.strip():
            try:
                obj = json.loads(text)
            except ValueError:
                yield Bad(line_no, not_json(text))
                continue
            yield _jsonl_entry(line_no, obj)


def _jsonl_entry(line_no: int, obj: Any) -> Entry | Bad:
    if not isinstance(obj, dict):
        return Bad(line_no, "not a JSON object")
    if obj.get("kind") == "header":
        return Bad(line_no, f"a version-{obj.get('version')} trace header, not a field log line (--format trace?)")
    cp = obj.get("chargePointId")
    if not isinstance(cp, str) or not cp:
        return Bad(line_no, "no chargePointId")
    try:
        us = parse_time(obj.get("time"))
    except ValueError as exc:
        return Bad(line_no, str(exc))
    if "event" in obj:
        if obj["event"] not in ("connect", "disconnect"):
            return Bad(line_no, f"event {obj['event']!r} is neither connect nor disconnect")
        return Entry(us, cp, "link", event=obj["event"], why=str(obj.get("why") or ""))
    direction = {"cp": "out", "csms": "in"}.get(str(obj.get("from")))
    if direction is None:
        return Bad(line_no, f'from is {obj.get("from")!r}, not "cp" or "csms"')
    frame = obj.get("frame")
    if isinstance(frame, str):
        frame = frame_from_text(frame)
        if isinstance(frame, str):
            return Bad(line_no, frame)
    why = check_frame(frame)
    return Bad(line_no, why) if why else Entry(us, cp, direction, frame)


# --- frames -------------------------------------------------------------------------------------

_FRAME_LINE = re.compile(r"\s*(\d{4}-\d\d-\d\d[T ][^\s\[]+|\d+(?:\.\d+)?)\s+(?:([^\s\[]+)\s+)?(\[.*?)\s*")


def read_frames(path: Path, options: ImportOptions) -> Iterator[Entry | Bad]:
    """`TIME [frame]` or `TIME CHARGER-ID [frame]` lines; directions from actions and message ids."""
    pending: OrderedDict[tuple[str, str], str] = OrderedDict()  # (cp, message id) -> the CALL's direction
    for line_no, text in text_lines(path):
        if isinstance(text, Bad):
            yield text
            continue
        if not text.strip():
            continue
        m = _FRAME_LINE.fullmatch(text.rstrip("\r\n"))
        if m is None:
            yield Bad(line_no, "not `TIME [frame]` or `TIME CHARGER-ID [frame]`")
            continue
        cp = m.group(2) or options.cp
        if not cp:
            raise ConfigError(f"{path}:{line_no}: no charger id before the frame; name the charger with --cp ID")
        try:
            us = parse_time(m.group(1))
        except ValueError as exc:
            yield Bad(line_no, str(exc))
            continue
        frame = frame_from_text(m.group(3))
        if isinstance(frame, str):
            yield Bad(line_no, frame)
            continue
        yield _direct(line_no, us, cp, frame, pending)


def _direct(
    line_no: int, us: int, cp: str, frame: list[Any], pending: OrderedDict[tuple[str, str], str]
) -> Entry | Bad:
    """The entry with the frame's direction: a CALL's from its action, an answer's from its CALL."""
    key = (cp, frame[1])
    if frame[0] == 2:
        direction = "in" if frame[2] in CSMS_ACTIONS else "out"
        pending[key] = direction
        pending.move_to_end(key)
        if len(pending) > PENDING_CALLS:
            pending.popitem(last=False)
        return Entry(us, cp, direction, frame)
    call = pending.pop(key, None)
    if call is None:
        what = "CALLRESULT" if frame[0] == 3 else "CALLERROR"
        return Bad(line_no, f"a {what} with message id {frame[1]!r} that answers no CALL before it", fatal=False)
    return Entry(us, cp, "out" if call == "in" else "in", frame)


# --- our version-1 trace ------------------------------------------------------------------------


def read_trace_v1(path: Path, options: ImportOptions) -> Iterator[Entry | Bad]:
    """A simulator/scenario trace: its frames and its connect/close link records, times from its epoch."""
    epoch_us: int | None = None
    for line_no, text in text_lines(path):
        if isinstance(text, Bad):
            if epoch_us is None:
                raise FieldLogImportError(f"{path}:{line_no}: {text.reason}: not a version-1 trace")
            yield text
            continue
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except ValueError:
            if epoch_us is None:
                raise FieldLogImportError(f"{path}:{line_no}: {not_json(text)}: not a version-1 trace") from None
            yield Bad(line_no, "not a JSON line (cut short?)")
            continue
        if epoch_us is None:
            epoch_us = _trace_epoch(path, line_no, obj)
            continue
        entry = _trace_entry(line_no, epoch_us, obj)
        if entry is not None:
            yield entry


def _trace_epoch(path: Path, line_no: int, obj: Any) -> int:
    """The header's epoch, or why this file is not a version-1 trace."""
    if not isinstance(obj, dict) or obj.get("kind") != "header":
        raise FieldLogImportError(f"{path}:{line_no}: no trace header: not a version-1 trace (another --format?)")
    if obj.get("version") != 1:
        hint = " (already a frame log)" if obj.get("version") == 2 else ""
        raise FieldLogImportError(f"{path}:{line_no}: a version-{obj.get('version')} trace, not version 1{hint}")
    try:
        return parse_time(obj.get("epoch"))
    except ValueError as exc:
        raise FieldLogImportError(f"{path}:{line_no}: the header's epoch: {exc}") from None


def _trace_entry(line_no: int, epoch_us: int, obj: Any) -> Entry | Bad | None:
    """A frame or link entry; None for the trace's other records (states, faults, sessions...)."""
    if not isinstance(obj, dict):
        return Bad(line_no, "not a JSON object")
    kind, cp, t = obj.get("kind"), obj.get("cp"), obj.get("t")
    if kind not in ("in", "out", "link"):
        return None
    if not isinstance(cp, str) or not cp or not isinstance(t, int | float) or isinstance(t, bool):
        return Bad(line_no, "a record needs a number t and a charge point id cp")
    us = epoch_us + round(t * 1_000_000)
    if kind == "link":
        if obj.get("event") == "connected":
            return Entry(us, cp, "link", event="connect")
        if obj.get("event") == "closed":
            code = f", code {obj['code']}" if obj.get("code") is not None else ""
            return Entry(us, cp, "link", event="disconnect", why=f"closed by {obj.get('by') or 'csms'}{code}")
        return None  # connect_failed, queue_lost, replay_held: no change of a live link
    text = obj.get("frame")
    frame = frame_from_text(text) if isinstance(text, str) else text
    if isinstance(frame, str):
        return Bad(line_no, frame)
    why = check_frame(frame)
    return Bad(line_no, why) if why else Entry(us, cp, kind, frame)


# --- the import ---------------------------------------------------------------------------------


def _read_csv(path: Path, options: ImportOptions) -> Iterator[Entry | Bad]:
    return read_ocpp_core_csv(path, options)


READERS: dict[str, Reader] = {
    "jsonl": read_jsonl,
    "frames": read_frames,
    "ocpp-core-csv": _read_csv,
    "trace": read_trace_v1,
}


def read_entries(path: str | Path, options: ImportOptions) -> Iterator[Entry | Bad]:
    """The entries and bad lines of one field log, in file order (no sorting, no counting)."""
    if options.format not in READERS:
        raise ConfigError(f"unknown format {options.format!r}: one of {', '.join(FORMATS)}")
    if options.cp is not None and options.format != "frames":
        raise ConfigError("--cp names the charger of `frames` lines; the other formats name it on every line")
    return READERS[options.format](Path(path), options)


@dataclass
class _Charger:
    votes: Counter[str] = field(default_factory=Counter)
    frames: int = 0


_MAX_UNKNOWN_NAMES = 1000
_KEPT_REASONS = 5


@dataclass
class ImportReport:
    """What an import read and wrote: the summary paragraph's figures."""

    source: str
    format: str
    output: str
    charge_points: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    links: int = 0
    inferred_links: int = 0
    skipped: int = 0
    reasons: list[str] = field(default_factory=list)  # the first few skipped lines, "line N: why"
    unknown: Counter[str] = field(default_factory=Counter)
    mixed: list[str] = field(default_factory=list)  # chargers whose actions voted for both versions
    out_of_order: int = 0
    first_us: int = 0
    last_us: int = 0

    def summary(self) -> str:
        """One paragraph: chargers, versions, frames, skipped (first reasons), unknown actions, span."""
        ids = sorted(self.charge_points)
        if len(ids) <= 5:
            chargers = ", ".join(f"{c}: OCPP {self.charge_points[c]}" for c in ids)
        else:
            versions = Counter(self.charge_points.values())
            counts = ", ".join(f"{n} on OCPP {v}" for v, n in sorted(versions.items()))
            chargers = f"{counts}; {', '.join(ids[:3])}, ..."
        parts = [
            f"Imported {self.source} ({self.format}) into {self.output}: {_n(len(ids), 'charger')} ({chargers}), "
            f"{_n(self.frames, 'frame')} and {_n(self.links, 'link event')}"
            + (f" ({self.inferred_links} inferred from silences)" if self.inferred_links else "")
            + f", from {iso(self.first_us)} to {iso(self.last_us)} ({_span(self.last_us - self.first_us)})."
        ]
        if self.skipped:
            more = ", ..." if self.skipped > len(self.reasons) else ""
            parts.append(f"Skipped {_n(self.skipped, 'line')}: {'; '.join(self.reasons)}{more}.")
        else:
            parts.append("Skipped none.")
        if self.unknown:
            top = ", ".join(f"{a} x{n}" for a, n in self.unknown.most_common(5))
            parts.append(f"Unknown actions (kept): {_n(sum(self.unknown.values()), 'CALL')} ({top}).")
        if self.mixed:
            parts.append(f"Both 1.6 and 2.0.1 actions from {', '.join(self.mixed[:5])}: the more frequent won.")
        if self.out_of_order:
            parts.append(f"{self.out_of_order} entries were earlier than the line before them: sorted by time.")
        return " ".join(parts)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _span(us: int) -> str:
    seconds = us / 1e6
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def _vote(frame: list[Any]) -> str | None:
    """The OCPP version a CALL speaks for, if its action or payload shape says so."""
    if frame[0] != 2:
        return None
    action, payload = frame[2], frame[3]
    if action in V201_ONLY:
        return "2.0.1"
    if action in V16_ONLY:
        return "1.6"
    if action == "BootNotification":
        return "2.0.1" if "chargingStation" in payload else "1.6" if "chargePointVendor" in payload else None
    if action == "StatusNotification":
        return "2.0.1" if "connectorStatus" in payload else "1.6" if "status" in payload else None
    return None


class _Tally:
    """Counts entries and skips while the log is read; decides each charger's version at the end."""

    def __init__(self, report: ImportReport) -> None:
        self.report = report
        self.chargers: dict[str, _Charger] = {}
        self.first_us: int | None = None
        self.last_us: int | None = None

    def entry(self, e: Entry) -> None:
        c = self.chargers.get(e.cp) or self.chargers.setdefault(e.cp, _Charger())
        self.first_us = e.us if self.first_us is None else min(self.first_us, e.us)
        self.last_us = e.us if self.last_us is None else max(self.last_us, e.us)
        if e.frame is None:
            self.report.links += 1
            return
        self.report.frames += 1
        c.frames += 1
        vote = _vote(e.frame)
        if vote:
            c.votes[vote] += 1
        if e.frame[0] == 2 and e.frame[2] not in V16_ACTIONS and e.frame[2] not in V201_ACTIONS:
            if e.frame[2] in self.report.unknown or len(self.report.unknown) < _MAX_UNKNOWN_NAMES:
                self.report.unknown[e.frame[2]] += 1

    def skip(self, bad: Bad) -> None:
        self.report.skipped += 1
        if len(self.report.reasons) < _KEPT_REASONS:
            self.report.reasons.append(f"line {bad.line}: {bad.reason}")

    def versions(self) -> dict[str, str]:
        out = {}
        for cp, c in self.chargers.items():
            if c.votes["1.6"] and c.votes["2.0.1"]:
                self.report.mixed.append(cp)
            out[cp] = "2.0.1" if c.votes["2.0.1"] > c.votes["1.6"] else "1.6"
        return out


def _encode(e: Entry) -> str:
    body = e.frame if e.frame is not None else [e.event, e.why]
    return json.dumps([e.cp, e.kind, body], separators=(",", ":"), ensure_ascii=False)


def _decode(us: int, epoch_us: int, text: str) -> FrameRecord | LinkRecord:
    cp, kind, body = json.loads(text)
    t = (us - epoch_us) / 1e6
    if kind == "link":
        return LinkRecord(t, cp, body[0], body[1])
    return FrameRecord(t, cp, kind, body)


class _Gaps:
    """Infers a disconnect/connect pair around a charger's silences longer than `gap_us`.

    Fed the records in time order; keeps one deadline per charger in a heap (memory grows with the
    chargers, not the log). A deadline passed by another record means that charger has been silent
    for `gap_us`: its disconnect is at the deadline, its connect just before its next record.
    A charger the log itself says is disconnected gets nothing inferred.
    """

    def __init__(self, gap_us: int) -> None:
        self.gap_us = gap_us
        self.last: dict[str, int] = {}
        self.heap: list[tuple[int, str]] = []
        self.in_heap: set[str] = set()
        self.down: set[str] = set()  # the log said disconnect, or we inferred it
        self.inferred: dict[str, int] = {}  # charger -> when its inferred disconnect was
        self.count = 0

    def before(self, us: int, cp: str, event: str | None) -> list[tuple[int, str, str, str]]:
        """The (us, cp, event, why) link events to write before the record (us, cp); event: the record's."""
        out = []
        seconds = f"{self.gap_us / 1e6:g}"
        while self.heap and self.heap[0][0] < us:
            deadline, c = heappop(self.heap)
            due = self.last[c] + self.gap_us
            if due > deadline:
                heappush(self.heap, (due, c))
                continue
            self.in_heap.discard(c)
            if c not in self.down:
                self.down.add(c)
                self.inferred[c] = deadline
                out.append((deadline, c, "disconnect", f"no frames for {seconds} s (inferred: --gap-seconds)"))
        if event == "disconnect":
            self.down.add(cp)
            self.inferred.pop(cp, None)
        elif event == "connect":
            self.down.discard(cp)
            self.inferred.pop(cp, None)
        elif cp in self.inferred:
            silent = (us - self.inferred.pop(cp)) / 1e6 + self.gap_us / 1e6
            self.down.discard(cp)
            out.append((us, cp, "connect", f"frames again after {silent:.0f} s of silence (inferred: --gap-seconds)"))
        self.last[cp] = us
        if cp not in self.in_heap:
            heappush(self.heap, (us + self.gap_us, cp))
            self.in_heap.add(cp)
        self.count += len(out)
        return out


def import_log(source: str | Path, output: str | Path, options: ImportOptions | None = None) -> ImportReport:
    """Reads `source`, writes the frame log `output`; FieldLogImportError names what is wrong.

    Nothing is written when the log cannot be imported: the first pass reads, counts and sorts
    into temporary runs; the output is written from the merged runs only after it succeeded.
    """
    options = options or ImportOptions()
    src, out = Path(source), Path(output)
    if options.gap_seconds is not None and options.gap_seconds <= 0:
        raise ConfigError(f"--gap-seconds {options.gap_seconds:g}: need a number of seconds above 0")
    report = ImportReport(str(source), options.format, str(output))
    tally = _Tally(report)
    entries = read_entries(src, options)
    out.parent.mkdir(parents=True, exist_ok=True)
    with RunSorter(out.parent, options.run_bytes) as runs:
        try:
            for item in entries:
                if isinstance(item, Bad):
                    if item.fatal and not options.skip_bad:
                        raise FieldLogImportError(f"{src}:{item.line}: {item.reason} (--skip-bad skips such lines)")
                    tally.skip(item)
                    continue
                tally.entry(item)
                runs.add(item.us, _encode(item))
        except OSError as exc:
            raise FieldLogImportError(f"{exc.filename or src}: {exc.strerror or exc}") from None  # the log, or a run
        if tally.first_us is None or tally.last_us is None or report.frames == 0:
            raise FieldLogImportError(f"{src}: no frames in it: is it a {options.format} log? (see --format)")
        report.first_us, report.last_us = tally.first_us, tally.last_us
        report.charge_points = tally.versions()
        report.out_of_order = runs.out_of_order
        _write(out, src, options, report, runs)
    return report


def _write(out: Path, src: Path, options: ImportOptions, report: ImportReport, runs: RunSorter) -> None:
    epoch = report.first_us
    header = FrameLogHeader(
        iso(epoch), report.charge_points, {"file": src.name, "format": options.format}, report.frames, report.skipped
    )
    gaps = _Gaps(round(options.gap_seconds * 1e6)) if options.gap_seconds else None
    with FrameLogWriter(out) as writer:
        writer.header(header)
        for us, text in runs.merged():
            record = _decode(us, epoch, text)
            if gaps is not None:
                event = record.event if isinstance(record, LinkRecord) else None
                for at, cp, ev, why in gaps.before(us, record.cp, event):
                    writer.record(LinkRecord((at - epoch) / 1e6, cp, ev, why))
            writer.record(record)
    if gaps is not None:
        report.inferred_links = gaps.count
        report.links += gaps.count
