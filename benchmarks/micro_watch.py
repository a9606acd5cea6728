"""`python -m benchmarks.micro_watch [--cps 20000]`: CPU per round of the dashboard watcher's look at the registry.

The watcher (csms.services.watch) looks at every connected charge point once a second, in the event loop, so its
round is a stall of the loop that grows with the fleet. This times `Watcher._look_at_registry` over N
fake charge points with 2 unchanged connectors each (the common case) in process CPU time, so the figure
does not depend on what else the machine runs. For a before/after, run it with PYTHONPATH set to each
source tree (e.g. a `git archive` of the commit before).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.micro_watch", description=__doc__)
    ap.add_argument("--cps", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args(argv)

    from csms.ocpp.registry import LiveConnector
    from csms.services.watch import Watcher

    now = datetime.now(UTC)

    class Live:
        def __init__(self, i: int) -> None:
            self.id = f"CP{i:05d}"
            self.connectors = {
                1: LiveConnector("Available", "NoError", now),
                2: LiveConnector("Available", "NoError", now),
            }

    class Ctx:
        registry = [Live(i) for i in range(args.cps)]

    class Hooks:
        enabled = False

    w = Watcher.__new__(Watcher)
    w.ctx, w.webhooks, w.statuses, w._present = Ctx(), Hooks(), {}, set()
    w._looked = {}  # ignored by versions without it
    w._look_at_registry()
    times = []
    for _ in range(args.rounds):
        t = time.process_time()
        w._look_at_registry()
        times.append(time.process_time() - t)
    times.sort()
    print(
        f"{args.cps} charge points: CPU per round min {1000 * times[0]:.1f} ms, "
        f"median {1000 * times[len(times) // 2]:.1f} ms"
    )


if __name__ == "__main__":
    main()
