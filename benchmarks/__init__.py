"""Micro-benchmarks of the CSMS's own parts (they import `csms`): kept out of `loadtests/`, whose
load drivers reach a CSMS only through OCPP and REST, and out of `make test`. Run from the repository root,
e.g. `.venv/bin/python -m benchmarks.micro_watch`; figures in reports/PERFORMANCE.md."""
