"""explain's re-enactment shell (`scenarios.explain._ask`): every adapter answer becomes words, never a traceback.

No CSMS here: small fake adapters that refuse, cannot, fail or never answer (trio's autojump clock for the last).
"""

from __future__ import annotations

from decimal import Decimal

import httpx
import trio

from scenarios.adapters.base import NotSupportedError, StartResult, UnlockResult
from scenarios.explain import REENACT_TARIFF, REENACT_WALL_TIMEOUT, _ask, _due
from scenarios.explain_rules import ACCEPTED, FAILED, NOT_SUPPORTED, REFUSED, Ask

START = Ask("start", "EVBOX-BT-4417", 2, "APP-7F3A91C2")


class Fake:
    """Answers start with `answer` (a StartResult, or an exception to raise); records what it was asked."""

    def __init__(self, answer: StartResult | BaseException | None = None) -> None:
        self.answer = answer
        self.asked: list[tuple] = []

    async def start(self, cp: str, connector: int, id_tag: str, tariff: Decimal) -> StartResult:
        self.asked.append((cp, connector, id_tag, tariff))
        if self.answer is None:
            await trio.sleep_forever()
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer

    async def stop(self, session_id: str) -> bool:
        self.asked.append((session_id,))
        return False

    async def unlock(self, cp: str, connector: int) -> UnlockResult:
        raise NotSupportedError("no unlock in this CSMS")


async def test_a_refused_start_is_its_status_code_and_message_with_the_logged_connector_and_tag():
    fake = Fake(StartResult(False, "s-1", 409, "RemoteStartRejected", "Charge point rejected the remote start"))
    outcome, said, session = await _ask(fake, START)  # type: ignore[arg-type]
    assert fake.asked == [("EVBOX-BT-4417", 2, "APP-7F3A91C2", REENACT_TARIFF)]
    assert (outcome, said, session) == (
        REFUSED,
        "HTTP 409 RemoteStartRejected: Charge point rejected the remote start",
        None,
    )
    fake = Fake(StartResult(True, "s-2", 200))
    assert await _ask(fake, START) == (ACCEPTED, "HTTP 200 accepted, session s-2", "s-2")  # type: ignore[arg-type]


async def test_an_adapter_that_cannot_or_fails_is_said_and_not_raised():
    outcome, said, _ = await _ask(Fake(NotSupportedError("no remote start")), START)  # type: ignore[arg-type]
    assert (outcome, said) == (NOT_SUPPORTED, "this CSMS's adapter cannot start (no remote start)")
    outcome, said, _ = await _ask(Fake(httpx.ReadTimeout("timed out")), START)  # type: ignore[arg-type]
    assert (outcome, said) == (FAILED, "the start failed: ReadTimeout: timed out")
    outcome, said, _ = await _ask(Fake(), Ask("unlock", "EVBOX-BT-4417", 2))  # type: ignore[arg-type]
    assert (outcome, said) == (NOT_SUPPORTED, "this CSMS's adapter cannot unlock (no unlock in this CSMS)")
    outcome, said, _ = await _ask(Fake(), Ask("stop", "EVBOX-BT-4417", 2, session_id="s-2"))  # type: ignore[arg-type]
    assert (outcome, said) == (REFUSED, "the CSMS refused the stop")


async def test_an_answer_that_never_comes_is_given_up_after_the_timeout(autojump_clock):
    started = trio.current_time()
    outcome, said, _ = await _ask(Fake(None), START)  # type: ignore[arg-type]
    assert (outcome, said) == (FAILED, f"the CSMS did not answer the start within {REENACT_WALL_TIMEOUT:g} s of wall")
    assert trio.current_time() - started == REENACT_WALL_TIMEOUT


class Clock:
    """A player whose log time is trio's clock."""

    async def sleep_until(self, t: float) -> None:
        await trio.sleep_until(t)


async def test_an_action_is_asked_when_due_and_not_after_the_play_ended(autojump_clock):
    done = trio.Event()
    assert await _due(Clock(), trio.current_time() + 5, done)  # type: ignore[arg-type]

    async def play_ends() -> None:
        await trio.sleep(1)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(play_ends)
        assert not await _due(Clock(), trio.current_time() + 100, done)  # type: ignore[arg-type]
