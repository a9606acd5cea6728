"""`python -m loadtests.pyspy_top PROFILE.txt`: the top entries of a py-spy raw profile, per thread.

Record with `py-spy record --threads -f raw -r 200 -o PROFILE.txt --pid PID` (no --idle: samples of
a thread that waits are not kept, so the shares are of CPU time). Prints each thread's share of the
samples, then for the main (trio) thread and the others the top functions by self time and by
inclusive time, with file and line folded away so one function is one row.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

__all__ = ["main"]

_FRAME = re.compile(r"^(.*?) \((.*?)(?::\d+)?\)$")


def _name(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    func, path = m.groups()
    parts = path.split("/")
    return f"{func} ({'/'.join(parts[-2:])})"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loadtests.pyspy_top", description=__doc__)
    ap.add_argument("profile")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)
    by_thread: Counter[str] = Counter()
    self_t: dict[str, Counter[str]] = {"main": Counter(), "other": Counter()}
    incl_t: dict[str, Counter[str]] = {"main": Counter(), "other": Counter()}
    totals = Counter()
    main_tid = None
    rows = []
    with open(args.profile, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            frames = stack.split(";")
            rows.append((frames, int(count)))
    for frames, _n in rows:
        # trio's main thread runs `run` -> `unrolled_run`; the others start in Thread._bootstrap.
        if main_tid is None and not any("Thread._bootstrap" in f for f in frames[1:3]):
            main_tid = frames[0]
    for frames, n in rows:
        tid = frames[0]
        by_thread[tid] += n
        group = "main" if tid == main_tid else "other"
        totals[group] += n
        names = [_name(f) for f in frames[1:]]
        if names:
            self_t[group][names[-1]] += n
        for name in set(names):
            incl_t[group][name] += n
    total = sum(by_thread.values())
    print(
        f"samples {total}: main thread {totals['main']} ({100 * totals['main'] / max(total, 1):.1f} %), "
        f"other threads {totals['other']} ({100 * totals['other'] / max(total, 1):.1f} %)"
    )
    for group in ("main", "other"):
        t = max(totals[group], 1)
        print(f"\n== {group} thread(s): top {args.top} by self time (% of this group's samples)")
        for name, n in self_t[group].most_common(args.top):
            print(f"  {100 * n / t:5.1f} %  {name}")
        print(f"== {group} thread(s): top {args.top} by inclusive time")
        for name, n in incl_t[group].most_common(args.top + 8)[: args.top + 8]:
            print(f"  {100 * n / t:5.1f} %  {name}")


if __name__ == "__main__":
    main()
