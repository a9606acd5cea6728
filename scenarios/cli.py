"""`unstuck-scenarios`: placeholder until the scenario suites land (no issue has asked for them yet)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("unstuck-scenarios: the scenario suites are not built yet. Meanwhile, reproduce faults with\n"
          "  unstuck-sim run --csms ws://127.0.0.1:9000/ocpp --count 10 --fault drop_stop_transaction=0.2\n"
          "against `make run`, and check connectors with GET /api/connectors?verdict=busy.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
