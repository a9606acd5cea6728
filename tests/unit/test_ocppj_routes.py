"""Connections share their handler class's route map, and each still calls its own handler instance."""

from __future__ import annotations

import json

from ocpp.routing import on

from ocppj import OcppConnection
from ocppj.frames import Call


class Handlers:
    def __init__(self, name: str) -> None:
        self.name = name

    @on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, **_kw):
        return {"status": "Accepted", "data": f"{self.name}:{vendor_id}"}


def test_one_route_map_per_class_each_connection_its_own_instance():
    a = OcppConnection(None, peer="A", handlers=Handlers("a"))
    b = OcppConnection(None, peer="B", handlers=Handlers("b"))
    assert a._routes is b._routes  # built once for the class, not per connection
    call = Call("1", "DataTransfer", {"vendorId": "V"})
    assert json.loads(a._on_call(call, None))[2]["data"] == "a:V"
    assert json.loads(b._on_call(call, None))[2]["data"] == "b:V"
