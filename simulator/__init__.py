"""unstuck's simulator: a deterministic fleet of faulty OCPP 1.6J charge points.

Pure core: `model` (connector physics as a transition table), `faults` (fault
modes and their decisions), `fleetspec` (fleets, TOML, session plans),
`configstore`, `rng`. Shell: `chargepoint`, `fleet`, `driver`, `cli`, over the
shared trio OCPP-J layer in `ocppj`. See simulator/README.md.
"""

from .chargepoint import ChargePoint, Transaction
from .errors import ConfigError, SimulatorError, TraceError, TransitionError
from .faults import FAULTS, FaultSpec, parse_fault_option
from .fleet import Fleet
from .fleetspec import DriverSpec, FleetSpec, GroupSpec, SessionPlan, load_fleet_file
from .model import Car, Event, State
from .replay import ReplayScript
from .trace import TraceWriter, decisions, read_trace
from .truth import ChargePointTruth, ConnectorTruth, FiredFault, truth_at

__all__ = [
    "Fleet",
    "FleetSpec",
    "GroupSpec",
    "DriverSpec",
    "SessionPlan",
    "load_fleet_file",
    "ChargePoint",
    "Transaction",
    "Car",
    "State",
    "Event",
    "FAULTS",
    "FaultSpec",
    "parse_fault_option",
    "TraceWriter",
    "read_trace",
    "decisions",
    "ReplayScript",
    "ChargePointTruth",
    "ConnectorTruth",
    "FiredFault",
    "truth_at",
    "SimulatorError",
    "ConfigError",
    "TransitionError",
    "TraceError",
]
