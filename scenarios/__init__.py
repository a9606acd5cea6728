"""unstuck's scenario suites: a CSMS plus a faulty simulated fleet, judged against ground truth.

Layers: `adapters/` (how to ask a CSMS), `observe` (sampling verdicts),
`timeline` + `oracle` (pure judgement), `run` + `plugin` (the pytest shell),
`catalogue/` (one module per scenario), `report/` (JSON and HTML), `cli`.
The harness talks to a CSMS only through OCPP and its public REST API.
"""
