"""OCPP 2.0.1 peers we did not write (the `ocpp` library, npm ocpp-rpc), ready to point at a CSMS."""
