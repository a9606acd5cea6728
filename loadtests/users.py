"""The two kinds of locust user: charge points (OCPP) and app / admin clients (REST).

`ChargePointUser`: one user is one OCPP 1.6J charge point of this process's fleet
(loadtests/fleet.py). It connects and boots in `on_start`; its one task is a car
arriving at an idle connector, which then plays a whole visit in the charge point's
own greenlet (Authorize, StartTransaction, MeterValues, StopTransaction, statuses),
so locust's `wait_time` is the gap between arrivals, and several connectors charge
at once. Its answers to the CSMS (remote start/stop, unlock, triggers, ...) and its
fault modes are the charge point's. When the user stops, its charge point stays
connected without new cars: the oracle judges it after the traffic.

`ApiUser`: the app and the support desk, through the REST API: asks a connector's
occupancy, starts a session on a connector that is really free, stops its own
sessions, and as admin now and then unlocks a connector the CSMS says is busy.
Every occupancy answer is written to the trace as a sample for the oracle (was it
free while a car charged?), every started session with its tariff (is the fee right?).
"""

from __future__ import annotations

import random
import time
from typing import Any

from locust import FastHttpUser, User, between, task

from . import fleet as fleet_mod
from .chargepoint import ChargePoint
from .options import LoadOptions

__all__ = ["ChargePointUser", "ApiUser"]

TARIFFS = ("0.25", "0.39", "0.4999", "0.61")  # per kWh; one with 4 decimals, to catch rounding
CONNECT_WAIT_S = 30.0


def _fleet(user: User) -> fleet_mod.Fleet:
    fleet = fleet_mod.current()
    if fleet is None:  # not started by the locustfile's test_start hook (e.g. run as a library)
        opts = LoadOptions.from_parsed(user.environment.parsed_options)
        fleet = fleet_mod.start(opts, "X", lambda *_args: None)
    return fleet


class ChargePointUser(User):
    """One OCPP 1.6J charge point over a WebSocket (websockets.sync.client on gevent)."""

    weight = 10

    def wait_time(self) -> float:
        lo, hi = self.fleet.opts.arrival
        return random.uniform(lo, hi)

    def on_start(self) -> None:
        self.fleet = _fleet(self)
        self.cp: ChargePoint = self.fleet.add()
        self.cp.start()
        self.cp.wait_online(CONNECT_WAIT_S)  # it keeps trying after that; the first car simply waits

    @task
    def car_arrives(self) -> None:
        self.cp.car_arrives()

    def on_stop(self) -> None:
        cp = getattr(self, "cp", None)  # None: stopped before on_start got that far
        if cp is not None:
            cp.driving = False  # no new cars; the charge point stays connected for the oracle


class ApiUser(FastHttpUser):
    """The app (start, stop, occupancy) and, now and then, an admin unlocking a connector."""

    weight = 1
    wait_time = between(1.0, 5.0)

    def on_start(self) -> None:
        self.fleet = _fleet(self)
        self.headers = {"Authorization": f"Bearer {self.fleet.opts.api_token}"}
        self.sessions: list[tuple[float, str]] = []  # (started at, session id) of the sessions this user started
        self.rng = random.Random()

    # ------------------------------------------------------------ helpers
    @property
    def traffic_over(self) -> bool:
        return self.fleet.parking

    def _connectors(self, *, idle: bool) -> list[tuple[ChargePoint, int]]:
        out = []
        for cp in list(self.fleet.charge_points.values()):
            if not cp.link.online.is_set():
                continue
            for cid, plug in cp.plugs.items():
                if not idle or (plug.idle and cp.driving):
                    out.append((cp, cid))
        return out

    def _occupancy(self, cp_id: str, connector: int) -> str | None:
        """GET occupancy, recorded as a sample for the oracle; the verdict, or None if no answer."""
        asked = self.fleet.now()
        with self.client.get(
            f"/api/connectors/{cp_id}/{connector}/occupancy",
            headers=self.headers,
            name="/api/connectors/[cp]/[connector]/occupancy",
            catch_response=True,
        ) as res:
            if res.status_code != 200:
                res.failure(f"occupancy answered {res.status_code}: {(res.text or '')[:200]}")
                return None
            data = (res.json() or {}).get("data") or {}
            verdict = data.get("verdict")
            if verdict is None:
                res.failure("occupancy answer has no verdict")
                return None
        self.fleet.record(
            "verdict",
            cp_id,
            connector=connector,
            asked=round(asked, 4),
            verdict=verdict,
            reasons=list(data.get("reasons") or ()),
            signals=data.get("signals"),
        )
        return verdict

    # -------------------------------------------------------------- tasks
    @task(6)
    def occupancy(self) -> None:
        if self.traffic_over:
            return
        known = self._connectors(idle=False)
        if known:
            cp, cid = self.rng.choice(known)
            self._occupancy(cp.id, cid)

    @task(3)
    def start_session(self) -> None:
        """A driver at a really free connector starts from the app (the scenarios' chaos user does the same)."""
        if self.traffic_over:
            return
        idle = self._connectors(idle=True)
        if not idle:
            return
        cp, cid = self.rng.choice(idle)
        if self._occupancy(cp.id, cid) != "free":
            return
        tariff = self.rng.choice(TARIFFS)
        body = {
            "chargingStationId": cp.id,
            "connectorId": cid,
            "chargeTagId": f"APP{self.rng.randint(1, 999):04d}",
            "chargingTariff": tariff,
        }
        with self.client.post(
            "/api/ChargingSession/start-charging-session",
            json=body,
            headers=self.headers,
            name="start-charging-session",
            catch_response=True,
        ) as res:
            data = _data(res)
            if res.status_code == 200 and data.get("sessionId"):
                self.sessions.append((time.monotonic(), str(data["sessionId"])))
                self.fleet.record(
                    "app", cp.id, event="started", connector=cid, session_id=str(data["sessionId"]), tariff=tariff
                )
            elif res.status_code in (409, 504):
                res.success()  # busy / rejected / charger too slow: the CSMS's honest answers to a faulty fleet
            else:
                res.failure(f"start answered {res.status_code}: {(res.text or '')[:200]}")

    @task(2)
    def stop_session(self) -> None:
        if self.traffic_over or not self.sessions or time.monotonic() - self.sessions[0][0] < 5.0:
            return
        _, session_id = self.sessions.pop(0)
        with self.client.post(
            "/api/ChargingSession/stop-charging-session",
            json={"sessionId": session_id},
            headers=self.headers,
            name="stop-charging-session",
            catch_response=True,
        ) as res:
            if res.status_code in (200, 404, 409, 504):
                res.success()  # 409: it already ended (the car left) or never started (a faulty charger)
            else:
                res.failure(f"stop answered {res.status_code}: {(res.text or '')[:200]}")

    @task(1)
    def admin_unlock(self) -> None:
        """Support unlocks a connector the CSMS reports busy (a driver called: 'the cable is stuck')."""
        if self.traffic_over or self.rng.random() > 0.3:
            return
        known = self._connectors(idle=False)
        if not known:
            return
        cp, cid = self.rng.choice(known)
        if self._occupancy(cp.id, cid) != "busy":
            return
        with self.client.post(
            "/api/ChargingSession/unlock-connector",
            json={"chargingStationId": cp.id, "connectorId": cid},
            headers=self.headers,
            name="unlock-connector",
            catch_response=True,
        ) as res:
            if res.status_code in (200, 400, 409, 504):
                res.success()  # 400: UnlockFailed / NotSupported from the charger, reported as the seed does
            else:
                res.failure(f"unlock answered {res.status_code}: {(res.text or '')[:200]}")
            self.fleet.record("app", cp.id, event="unlocked", connector=cid, status=res.status_code)


def _data(res: Any) -> dict[str, Any]:
    try:
        return (res.json() or {}).get("data") or {}
    except ValueError:
        return {}
