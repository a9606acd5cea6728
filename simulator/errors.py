"""Errors of the simulator: one root, names ending in Error.

`ConfigError` is the user's mistake (a bad `--fault` or fleet file) and says how
to fix it; `TransitionError` is a script asking the physical model for
something a real connector cannot do (unplugging an empty socket).
"""

from __future__ import annotations

__all__ = ["SimulatorError", "ConfigError", "TransitionError", "TraceError"]


class SimulatorError(Exception):
    """Root of every error this package raises."""


class ConfigError(SimulatorError, ValueError):
    """A fault option, fleet file or CLI argument that cannot be used as given."""


class TransitionError(SimulatorError):
    """A physical event that is not allowed in the connector's current state."""


class TraceError(SimulatorError):
    """A trace file that cannot be replayed (missing header, wrong version)."""
