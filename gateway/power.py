"""The Pi's power supply as its firmware reports it: under-voltage and throttling.

A weak or long supply cable, or a failing DC-DC converter in a cabinet, shows first as
under-voltage events; the SoC then caps its clock, and SD-card writes become risky.
The firmware's ``get_throttled`` bits (exposed by the kernel in sysfs, the same value
``vcgencmd get_throttled`` prints) say what is happening now and what has happened
since boot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

THROTTLED_PATH = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")

CONDITIONS = (
    # name, bit now, bit since boot (Raspberry Pi firmware, get_throttled)
    ("under_voltage", 0, 16),
    ("frequency_capped", 1, 17),
    ("throttled", 2, 18),
    ("soft_temp_limit", 3, 19),
)


def read_throttled(path: Path = THROTTLED_PATH) -> int | None:
    """The firmware's bits, or None where the kernel does not expose them (not a Pi)."""
    try:
        return int(path.read_text().strip(), 16)
    except (OSError, ValueError):
        return None


def decode(bits: int | None) -> dict[str, Any]:
    """The ``power`` object of ``/healthz``: each condition now and since boot.

    ``available`` is false off a Pi; every condition is then ``None`` (unknown).
    """
    power: dict[str, Any] = {"available": bits is not None, "bits": bits}
    for name, now, since_boot in CONDITIONS:
        power[name] = None if bits is None else bool(bits >> now & 1)
        power[f"{name}_since_boot"] = None if bits is None else bool(bits >> since_boot & 1)
    return power


def warnings(power: dict[str, Any]) -> list[str]:
    """What a technician should hear about, worst first; empty when all is well."""
    now = [name.replace("_", " ") for name, _, _ in CONDITIONS if power.get(name)]
    before = [name.replace("_", " ") for name, _, _ in CONDITIONS
              if power.get(f"{name}_since_boot") and not power.get(name)]
    out = []
    if now:
        out.append(f"{', '.join(now)} now")
    if before:
        out.append(f"{', '.join(before)} since boot")
    return out


def degraded(power: dict[str, Any]) -> bool:
    """Under-voltage or throttling right now: the gateway runs, but not as it should."""
    return bool(power.get("under_voltage") or power.get("throttled")
                or power.get("frequency_capped"))
