"""REST basics on a real `csms serve`: health, metrics, auth, stations, bad bodies."""

from __future__ import annotations

import httpx


async def test_health_and_metrics(csms):
    async with httpx.AsyncClient(base_url=csms.http) as http:
        r = await http.get("/health")
        assert r.status_code == 200 and r.json()["status"] == "ok"
        r = await http.get("/metrics")
        assert "csms_connected_charge_points" in r.text
        r = await http.get("/docs")
        assert r.status_code == 200 and "swagger" in r.text.lower()


async def test_auth_roles(csms):
    async with httpx.AsyncClient(base_url=csms.http) as anon:
        r = await anon.get("/api/stations")
        assert r.status_code == 401 and r.json()["success"] is False
        r = await anon.get("/api/stations", headers={"Authorization": "Bearer wrong-token"})
        assert r.status_code == 401
    async with csms.client("user") as user:
        r = await user.get("/api/stations")
        assert r.status_code == 403 and "admin" in r.json()["message"]


async def test_station_management(csms):
    async with csms.client() as http:
        r = await http.post("/api/stations", json={"id": "st-1", "chargePointId": "CP001"})
        assert r.status_code == 201
        assert r.json()["data"] | {"createdAt": None} == {
            "id": "st-1",
            "chargePointId": "CP001",
            "active": True,
            "createdAt": None,
        }
        r = await http.post("/api/stations", json={"id": "st-1", "chargePointId": "CP001"})
        assert r.status_code == 409
        r = await http.post("/api/stations", json={"chargePointId": "CP002", "active": False})
        generated = r.json()["data"]["id"]
        r = await http.get("/api/stations")
        assert {s["id"] for s in r.json()["data"]} == {"st-1", generated}
        r = await http.get("/api/stations/st-1")
        assert r.json()["data"]["chargePointId"] == "CP001" and r.json()["data"]["online"] is False
        r = await http.get("/api/stations/nope")
        assert r.status_code == 404 and r.json()["message"] == "Charging station not found"


async def test_malformed_bodies_get_400_naming_the_field(csms):
    async with csms.client() as http:
        r = await http.post("/api/stations", json={"active": "maybe"})
        assert r.status_code == 400
        body = r.json()
        assert body["success"] is False and "chargePointId" in body["message"] and "active" in body["message"]
        r = await http.post("/api/stations", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and body["success"] is False
