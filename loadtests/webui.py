"""The oracle in locust's web UI: "judging (recovery window N s)" while it waits, then its verdict.

Locust's web UI polls its stats only while the test runs or spawns, and pressing Stop
blocks until `test_stop` returns, that is until the oracle has judged (up to the
whole recovery window). So that the wait is not silent:

- while the oracle judges, `/stats/requests` reports the state as
  "judging (recovery window N s)" (the header's Status shows it, and the Stop button
  stays "Loading" instead of offering "New" in the middle of the judgement);
- `/oracle` answers the oracle's status as JSON (phase, window, elapsed, last line);
- the index page gets a one-line banner that polls `/oracle` every two seconds: a
  countdown while judging, the verdict after it; when a judgement it watched ends it
  reloads the page once, so the header and the Failures tab show the oracle's rows.

`install` does nothing without a web UI (headless, workers).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, jsonify, request
from locust.env import Environment

__all__ = ["OracleStatus", "status", "install"]

IDLE, JUDGING, PASSED, FAILED, ERROR = "idle", "judging", "passed", "failed", "error"


@dataclass
class OracleStatus:
    """What the oracle is doing, for the web UI (the hooks update it; one per environment)."""

    phase: str = IDLE
    window: float = 0.0  # the recovery window it waits out
    started: float = 0.0  # wall clock when the judging began
    line: str = ""  # the last progress line, or the verdict

    @property
    def label(self) -> str:
        return f"judging (recovery window {self.window:.0f} s)" if self.phase == JUDGING else self.phase

    def reset(self) -> None:
        self.phase, self.window, self.started, self.line = IDLE, 0.0, 0.0, ""

    def judging(self, window: float, line: str) -> None:
        self.phase, self.window, self.started, self.line = JUDGING, window, time.time(), line

    def to_json(self) -> dict[str, Any]:
        elapsed = time.time() - self.started if self.phase == JUDGING else None
        return {"phase": self.phase, "label": self.label, "window": self.window, "elapsed": elapsed, "line": self.line}


def status(environment: Environment) -> OracleStatus:
    found = getattr(environment, "unstuck_oracle", None)
    if found is None:
        found = OracleStatus()
        environment.unstuck_oracle = found  # type: ignore[attr-defined]
    return found


BANNER = """
<div id="unstuck-oracle" style="display:none;position:fixed;left:0;right:0;bottom:0;z-index:2000;
 padding:8px 16px;font:14px monospace;color:#000;background:#ffca28"></div>
<script>
(function () {
  var box = document.getElementById("unstuck-oracle"), watched = false;
  var colours = {passed: "#81c784", failed: "#e57373", error: "#e57373"};
  function show(text, colour) { box.textContent = text; box.style.background = colour; box.style.display = "block"; }
  function tick() {
    fetch("./oracle").then(function (r) { return r.json(); }).then(function (s) {
      if (s.phase === "judging") {
        watched = true;
        var left = Math.max(0, Math.round(s.window - s.elapsed));
        show("oracle: " + s.label + ", " + Math.round(s.elapsed) + " s in, at most " + left + " s left. "
             + s.line, "#ffca28");
      } else if (watched) {
        location.reload();
      } else if (colours[s.phase]) {
        show(s.line, colours[s.phase]);
      }
    }).catch(function () {});
  }
  tick();
  setInterval(tick, 2000);
})();
</script>
"""


def install(environment: Environment) -> None:
    """Add `/oracle`, the judging state and the banner to locust's web UI (if there is one)."""
    web_ui = environment.web_ui
    if web_ui is None:
        return
    base = (getattr(environment.parsed_options, "web_base_path", None) or "").rstrip("/")
    blueprint = Blueprint("unstuck_oracle", __name__, url_prefix=base or None)

    @blueprint.route("/oracle")
    @web_ui.auth_required_if_enabled
    def oracle() -> Response:
        return jsonify(status(environment).to_json())

    web_ui.app.register_blueprint(blueprint)

    @web_ui.app.after_request
    def while_judging(response: Response) -> Response:
        now = status(environment)
        if request.endpoint == "locust.request_stats" and now.phase == JUDGING and response.is_json:
            data = json.loads(response.get_data())  # a copy: locust caches this response object
            data["state"] = now.label
            return Response(json.dumps(data), status=response.status, mimetype="application/json")
        if request.endpoint == "locust.index" and response.mimetype == "text/html":
            page = response.get_data(as_text=True)
            if "</body>" in page and "unstuck-oracle" not in page:
                response.set_data(page.replace("</body>", BANNER + "</body>", 1))
        return response
