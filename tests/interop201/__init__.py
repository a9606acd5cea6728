"""OCPP 2.0.1 peers we did not write, ready to point at a CSMS.

- libstation.LibStation: a charging station from the `ocpp` library's v201 ChargePoint (asyncio, own thread).
- ocpp_rpc.OcppRpcStation: node/station.js, a station on npm ocpp-rpc in strict mode. By hand:
      cd tests/interop201/node && npm ci
      node station.js ws://127.0.0.1:9000/ocpp/ST1 [--password PW] [--stay]
- libcentral201.LibCentral201: the `ocpp` library's v201 central system, which test_peers.py proves both
  peers against.
"""
