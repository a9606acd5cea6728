"""Central systems we did not write, run as processes, with their adapters and profiles.

The harness is only proven if it judges a CSMS that is not ours through the same
`CsmsAdapter` a QA team would write: `libcentral_serve` (the `ocpp` library's
central system with a small JSON API) and `plaincsms` (a little CSMS with its own
REST API, rules and timings). Each has a `*.toml` profile beside it.
"""
