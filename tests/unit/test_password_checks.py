"""OcppEndpoint's password checks: which workers a check waits for, and what a check cut off costs the charger."""

from __future__ import annotations

from types import SimpleNamespace

import trio
import trio.testing

from csms.core.chargepoint_auth import Admit
from csms.server import OcppEndpoint


def _endpoint(trusted_proxies: tuple[str, ...] = ()) -> OcppEndpoint:
    settings = SimpleNamespace(
        handshake_failures_per_id_and_address=5, handshake_failures_per_address=30, trusted_proxies=trusted_proxies
    )
    return OcppEndpoint(SimpleNamespace(settings=settings), None)  # type: ignore[arg-type]


def _admit() -> Admit:
    return Admit(authenticated=True)


def test_a_check_cut_off_while_waiting_for_a_worker_is_not_counted_as_a_failure() -> None:
    async def main() -> None:
        endpoint = _endpoint()
        async with trio.open_nursery() as nursery:
            for _ in range(2):  # both shared workers busy (a flood's checks)
                await nursery.start(_hold, endpoint._password_checks)
            with trio.move_on_after(10):  # the handshake deadline
                await endpoint._check_password("CP1", "10.0.0.7", _admit, lab_mode=False)
            assert not endpoint._guesses._attempts, "an attempt never checked stayed counted as a failure"
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_returning_charger_takes_a_free_shared_worker() -> None:
    async def main() -> None:
        endpoint = _endpoint()
        endpoint._guesses.begin("CP1", "10.0.0.7", 0)
        endpoint._guesses.succeeded("CP1", "10.0.0.7", 0)
        async with trio.open_nursery() as nursery:
            await nursery.start(_hold, endpoint._returning_checks)  # its own worker busy, the shared two idle
            with trio.fail_after(10):
                decision = await endpoint._check_password("CP1", "10.0.0.7", _admit, lab_mode=False)
            assert isinstance(decision, Admit)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_trusted_proxy_is_not_throttled() -> None:
    async def main() -> None:
        endpoint = _endpoint(("10.0.0.0/8",))
        assert endpoint._key("10.1.2.3") is None and endpoint._key("192.0.2.1") == "192.0.2.1"
        assert endpoint._key("2001:db8:1:2::9") == "2001:db8:1:2::/64"

    trio.run(main)


async def _hold(limiter: trio.CapacityLimiter, task_status=trio.TASK_STATUS_IGNORED) -> None:
    async with limiter:
        task_status.started()
        await trio.sleep_forever()
