"""BootNotification identity (vendor, model, serial, firmware) from a seeded Faker.

One shared Faker, re-seeded per charge point: building a Faker per charge point
would cost milliseconds and ~100 kB each.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from faker import Faker

__all__ = ["Identity", "make_identity"]


@dataclass(frozen=True, slots=True)
class Identity:
    vendor: str  # CiString20
    model: str  # CiString20
    serial: str  # CiString25
    firmware: str  # CiString50

    def boot_payload(self) -> dict[str, str]:
        return {
            "chargePointVendor": self.vendor,
            "chargePointModel": self.model,
            "chargePointSerialNumber": self.serial,
            "firmwareVersion": self.firmware,
        }


@cache
def _faker() -> Faker:
    return Faker()


def make_identity(seed: int) -> Identity:
    fake = _faker()
    fake.seed_instance(seed)
    vendor = fake.company().split()[0].strip(",")[:20]
    model = f"{fake.word().capitalize()} {fake.random_element(('AC', 'DC', 'Wallbox', 'Pro'))}"[:20]
    serial = fake.bothify("??-########").upper()[:25]
    firmware = f"{fake.random_int(1, 9)}.{fake.random_int(0, 20)}.{fake.random_int(0, 99)}"
    return Identity(vendor, model, serial, firmware)
