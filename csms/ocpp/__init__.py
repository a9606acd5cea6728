"""The OCPP side: WebSocket server, per-charge-point handlers, commands, the live registry."""
