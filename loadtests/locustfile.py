"""unstuck's locustfile: OCPP 1.6J charge points and REST clients against a CSMS, judged by the oracle.

    locust -f loadtests/locustfile.py --headless -u 500 -r 50 -t 60s \\
        --ocpp-url ws://127.0.0.1:9000/ocpp --api-url http://127.0.0.1:8000 --api-token "$TOKEN" \\
        --fault drop_stop_transaction=0.05 --fault silent_connector=0.05,ignore_trigger=false \\
        --csv reports/load --html reports/load.html

`make loadtest` starts a CSMS and runs this (loadtests/run.py). The oracle judges by
`--csms-profile` (default: `csms serve` with its default timings, as `make serve`
starts it) and ends its wait early once the CSMS has healed. The users are in
loadtests/users.py, the end-of-test oracle in loadtests/hooks.py; docs/loadtests.md
has the options and the distributed variant.
"""

from locust import events

from loadtests.hooks import install
from loadtests.users import ApiUser, ChargePointUser

__all__ = ["ChargePointUser", "ApiUser"]

install(events)
