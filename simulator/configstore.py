"""The charge point's OCPP configuration keys (GetConfiguration / ChangeConfiguration).

Pure. The defaults are shared by every charge point and only changed values are
stored per instance, so 2,000 charge points do not carry 2,000 copies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["KeySpec", "KEYS", "ConfigStore"]


@dataclass(frozen=True, slots=True)
class KeySpec:
    default: str
    kind: type  # int, bool or str
    readonly: bool = False


KEYS: Mapping[str, KeySpec] = {
    "HeartbeatInterval": KeySpec("300", int),
    "MeterValueSampleInterval": KeySpec("10", int),
    "ClockAlignedDataInterval": KeySpec("0", int),
    "ConnectionTimeOut": KeySpec("60", int),
    "AuthorizeRemoteTxRequests": KeySpec("false", bool),
    "LocalAuthorizeOffline": KeySpec("true", bool),
    "LocalPreAuthorize": KeySpec("false", bool),
    "StopTransactionOnEVSideDisconnect": KeySpec("true", bool),
    "StopTransactionOnInvalidId": KeySpec("true", bool),
    "UnlockConnectorOnEVSideDisconnect": KeySpec("true", bool),
    "TransactionMessageAttempts": KeySpec("3", int),
    "TransactionMessageRetryInterval": KeySpec("10", int),
    "ResetRetries": KeySpec("1", int),
    "WebSocketPingInterval": KeySpec("0", int),
    "MeterValuesSampledData": KeySpec("Energy.Active.Import.Register,Power.Active.Import", str),
    "StopTxnSampledData": KeySpec("Energy.Active.Import.Register", str),
    "NumberOfConnectors": KeySpec("1", int, readonly=True),
    "SupportedFeatureProfiles": KeySpec("Core,RemoteTrigger", str, readonly=True),
    "GetConfigurationMaxKeys": KeySpec("50", int, readonly=True),
}


def _valid(kind: type, value: str) -> bool:
    if kind is int:
        try:
            return int(value) >= 0
        except ValueError:
            return False
    if kind is bool:
        return value.lower() in ("true", "false")
    return len(value) <= 500


class ConfigStore:
    """Key/value store with OCPP 1.6 ChangeConfiguration semantics."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values: dict[str, str] = {}
        for key, value in (values or {}).items():
            if key not in KEYS:
                raise KeyError(f"unknown configuration key {key!r}")
            self._values[key] = str(value).lower() if KEYS[key].kind is bool else str(value)

    def get(self, key: str) -> str:
        return self._values.get(key, KEYS[key].default)

    def int(self, key: str) -> int:
        return int(self.get(key))

    def bool(self, key: str) -> bool:
        return self.get(key).lower() == "true"

    def set(self, key: str, value: str | int) -> None:
        """Set from inside the charge point (e.g. the interval a BootNotification returned)."""
        self._values[key] = str(value)

    def change(self, key: str, value: str) -> str:
        """ChangeConfiguration: Accepted, Rejected (read-only or bad value) or NotSupported."""
        spec = KEYS.get(key)
        if spec is None:
            return "NotSupported"
        if spec.readonly or not _valid(spec.kind, value):
            return "Rejected"
        self._values[key] = value.lower() if spec.kind is bool else value
        return "Accepted"

    def report(self, keys: Iterable[str] | None) -> tuple[list[dict[str, object]], list[str]]:
        """GetConfiguration: (configurationKey entries, unknownKey names)."""
        wanted = list(KEYS) if not keys else list(keys)
        known = [{"key": k, "readonly": KEYS[k].readonly, "value": self.get(k)} for k in wanted if k in KEYS]
        return known, [k for k in wanted if k not in KEYS]
