"""After the load: ask the CSMS, rebuild the truth from the traces, let the scenarios' oracle judge.

The judgement is `scenarios.oracle.judge` over `scenarios.timeline.Timeline`, the
same pure functions that judge every scenario; this module only gathers their
inputs and writes what they return. Its inputs:

- the traces of every locust process (`load_traces/RUN-PROCESS.jsonl`, the
  simulator's record kinds), which also hold the app side's observations: each
  occupancy answer an `ApiUser` got during the load (`verdict` records, judged for
  falsely free) and each session it started with its tariff (`app` records);
- the CSMS's verdicts on every connector, asked after the recovery window;
- the transactions and sessions the CSMS stored.

The CSMS is asked only through its public REST API, with `UnstuckRestAdapter`
(the scenarios' adapter): its coroutines never really wait on anything but its
HTTP client, so `run_sync` drives them over a synchronous httpx client, which
gevent's patched sockets make cooperative. No event loop inside locust.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Coroutine, Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

import httpx

from scenarios.adapters.base import StoredTransaction, Verdict
from scenarios.adapters.unstuck_rest import UnstuckRestAdapter
from scenarios.oracle import KINDS, Judgement, Rules, Sample, judge
from scenarios.timeline import Timeline

__all__ = [
    "SyncRestAdapter",
    "run_sync",
    "samples_from_records",
    "tariffs_from_records",
    "connectors_from_records",
    "TraceTail",
    "judge_load",
    "failure_rows",
    "summary",
    "verdict_line",
    "summary_text",
    "write_summary",
]

log = logging.getLogger("loadtests.judgement")
T = TypeVar("T")


# ---------------------------------------------------------------- asking the CSMS, synchronously
class _Ready:
    """An awaitable that is already done: what the sync client's answer looks like to `await`."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self):
        return self.value
        yield  # pragma: no cover - makes this a generator; never reached


class _SyncHttp:
    """The two methods the adapter calls on its httpx.AsyncClient, answered by an httpx.Client."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def get(self, url: str, **kwargs: Any) -> Awaitable[httpx.Response]:
        return _Ready(self.client.get(url, **kwargs))

    def post(self, url: str, **kwargs: Any) -> Awaitable[httpx.Response]:
        return _Ready(self.client.post(url, **kwargs))

    def aclose(self) -> Awaitable[None]:
        return _Ready(self.client.close())


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (every await is already done) to its end."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("the coroutine waited on something other than the synchronous HTTP client")


class SyncRestAdapter:
    """`UnstuckRestAdapter`'s own requests and parsing, over a synchronous httpx client."""

    def __init__(self, ocpp_url: str, api_url: str, token: str, *, cp_prefix: str = "", timeout: float = 60.0) -> None:
        self.adapter = UnstuckRestAdapter(ocpp_url, api_url, token, timeout=timeout, cp_prefix=cp_prefix)
        # Its own async client never opens a connection: the sync one below takes its place.
        self.adapter._http = _SyncHttp(
            httpx.Client(  # noqa: SLF001 - the adapter's one seam for its transport
                base_url=self.adapter.api_url, timeout=timeout, headers={"Authorization": f"Bearer {token}"}
            )
        )

    def verdicts(self, connectors: Iterable[tuple[str, int]]) -> dict[tuple[str, int], Verdict]:
        return run_sync(self.adapter.verdicts(connectors))

    def transactions(self, cp_prefix: str) -> list[StoredTransaction]:
        return run_sync(self.adapter.transactions(cp_prefix))

    def close(self) -> None:
        run_sync(self.adapter.aclose())


# ------------------------------------------------------------------------------ pure: the inputs
class TraceTail:
    """The records of some growing trace files, read on from where the last call stopped.

    The oracle looks at the traces every few seconds while it waits out the recovery window;
    only what was written since is parsed. A line not yet ended (a write caught half done)
    waits for the next call.
    """

    def __init__(self, paths: Iterable[str | Path]) -> None:
        self.offsets: dict[Path, int] = {Path(p): 0 for p in paths}
        self.records: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        """Every record so far (the same list, grown)."""
        for path, offset in self.offsets.items():
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            whole = chunk.rfind(b"\n") + 1
            for line in chunk[:whole].splitlines():
                if not line.strip():
                    continue
                try:
                    self.records.append(json.loads(line))
                except ValueError:
                    log.warning("%s: skipped a line that is not JSON (cut short?)", path)
            self.offsets[path] = offset + whole
        return self.records


def samples_from_records(records: Iterable[Mapping[str, Any]]) -> list[Sample]:
    """The occupancy answers the app users got during the load, as the oracle's samples."""
    out = []
    for r in records:
        if r.get("kind") != "verdict" or r.get("cp") is None:
            continue
        verdict = Verdict(str(r["verdict"]), tuple(r.get("reasons") or ()), r.get("signals"))
        out.append(Sample(float(r.get("asked", r["t"])), r["cp"], int(r["connector"]), verdict, float(r["t"])))
    return out


def tariffs_from_records(records: Iterable[Mapping[str, Any]]) -> dict[str, Decimal]:
    """Session id -> the tariff the app asked for (so a wrong fee is caught)."""
    out = {}
    for r in records:
        if r.get("kind") == "app" and r.get("event") == "started" and r.get("session_id"):
            try:
                out[str(r["session_id"])] = Decimal(str(r["tariff"]))
            except (InvalidOperation, KeyError):
                continue
    return out


def connectors_from_records(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Charge point -> number of connectors, from the identity records."""
    return {r["cp"]: int(r.get("connectors", 1)) for r in records if r.get("kind") == "identity" and r.get("cp")}


def judge_load(
    records: Sequence[Mapping[str, Any]],
    final: Sequence[Sample],
    stored: Sequence[StoredTransaction],
    *,
    recovery_window: float,
    grace: float,
    recovery_from: float,
    end: float,
    claims: frozenset[str] | None = None,
) -> Judgement:
    """The oracle over one load run: samples from the load and after recovery, truth from the traces.

    `claims` are the CSMS profile's: a finding of a kind it does not claim goes to `unclaimed`.
    """
    timeline = Timeline.from_records(records, connectors=connectors_from_records(records), end=end)
    rules = Rules(
        recovery_window=recovery_window,
        grace=grace,
        recovery_from=recovery_from,
        tariffs=tariffs_from_records(records),
        claims=claims,
    )
    return judge([*samples_from_records(records), *final], timeline, stored, rules)


# ------------------------------------------------------------------------------ pure: the summary
def failure_rows(j: Judgement, *, where: str = "oracle_summary.txt") -> list[tuple[str, int, str]]:
    """(kind, count, message) per violation kind: one locust failure row each, `count` occurrences.

    One message per kind (not per connector), so locust's failures table keeps one row per kind.
    """
    return [
        (kind, n, f"{KINDS.get(kind, kind)} ({n} {'finding' if n == 1 else 'findings'}; see {where})")
        for kind, n in j.counts().items()
    ]


def summary(j: Judgement, *, run: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "passed": j.passed,
        "checked": j.checked,
        "violationCounts": j.counts(),
        "notClaimed": dict(j.unclaimed),
        "violations": [v.to_json() for v in j.violations],
        "run": dict(run),
        "kinds": KINDS,
    }


def verdict_line(j: Judgement, *, run: Mapping[str, Any]) -> str:
    """One line: passed or failed, how the wait ended, and what the profile does not claim."""
    window = run.get("recoveryWindow")
    if run.get("healedAfter") is not None:
        wait = f"healed after {run['healedAfter']:.0f} s of the profile's {window:g} s window"
    else:
        wait = f"judged after the whole {window:g} s recovery window"
    line = f"oracle: {'PASSED' if j.passed else 'FAILED'} ({wait})"
    if not j.passed:
        line += f"; {len(j.violations)} violations: " + ", ".join(f"{k}={n}" for k, n in j.counts().items())
    if j.unclaimed:
        line += "; not claimed by the CSMS profile (not judged): " + ", ".join(
            f"{k}={n}" for k, n in sorted(j.unclaimed.items())
        )
    return line


def summary_text(j: Judgement, *, run: Mapping[str, Any], limit: int = 200) -> str:
    head = [
        verdict_line(j, run=run),
        f"run {run.get('run')}, checked {', '.join(f'{k}={v}' for k, v in j.checked.items())}",
        f"CSMS profile {run.get('profileName')!r} ({run.get('csmsProfile')}); recovery window "
        f"{run.get('recoveryWindow')} s from t={run.get('recoveryFrom')}, judged with {run.get('judgedWindow')} s",
        f"{run.get('chargePoints')} charge points, traces: {', '.join(run.get('traces', []))}",
    ]
    if j.passed:
        return "\n".join(head) + "\n"
    lines = [*head, "", "violations (kind, connector):"]
    lines += [f"  {v.kind:<22} {v.cp}/{v.connector}" for v in j.violations[:limit]]
    if len(j.violations) > limit:
        lines.append(f"  ... and {len(j.violations) - limit} more")
    lines += ["", "details:"]
    for v in j.violations[:limit]:
        lines += [v.describe(), ""]
    return "\n".join(lines) + "\n"


def write_summary(folder: Path, j: Judgement, *, run: Mapping[str, Any]) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    json_path, text_path = folder / "oracle_summary.json", folder / "oracle_summary.txt"
    json_path.write_text(json.dumps(summary(j, run=run), indent=2, default=str) + "\n", encoding="utf-8")
    text_path.write_text(summary_text(j, run=run), encoding="utf-8")
    return json_path, text_path
