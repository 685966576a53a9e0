"""I2C bus scan that names the chips it recognises."""

from __future__ import annotations

from typing import Any

from drivers import registry

BME280_CHIP_ID_REGISTER = 0xD0
CHIP_IDS = {0x60: "bme280", 0x58: "bmp280 (no humidity: not supported)"}
FIRST_ADDRESS, LAST_ADDRESS = 0x03, 0x77


def _candidates(address: int) -> list[str]:
    return [spec.name for spec in registry.DRIVERS.values() if address in spec.chip_ids]


def identify(bus: Any, address: int) -> str:
    """A name for what answers at ``address``, probing an id register where one is safe."""
    names = _candidates(address)
    if address in (0x76, 0x77):
        try:
            chip_id = bus.read_byte_data(address, BME280_CHIP_ID_REGISTER)
        except OSError:
            return " or ".join(names) or "unknown"
        return CHIP_IDS.get(chip_id, f"unknown (chip id 0x{chip_id:02x})")
    return " or ".join(names) if names else "unknown"


def _probe(bus: Any, address: int) -> bool:
    """Does a chip acknowledge ``address``? Probed as ``i2cdetect`` does by default: a
    quick write, except a byte read in the EEPROM ranges, where a quick write can corrupt
    some chips (a quick write of 0 looks like a write-protect command to them)."""
    try:
        if 0x30 <= address <= 0x37 or 0x50 <= address <= 0x5F:
            bus.read_byte(address)
        else:
            bus.write_quick(address)
    except OSError:
        return False
    return True


def scan_bus(bus: Any) -> dict[int, str]:
    """Addresses that acknowledge, with what they probably are."""
    found: dict[int, str] = {}
    for address in range(FIRST_ADDRESS, LAST_ADDRESS + 1):
        if not _probe(bus, address):
            continue
        found[address] = identify(bus, address)
    return found


def format_scan(bus_number: int, found: dict[int, str]) -> str:
    if not found:
        return (f"/dev/i2c-{bus_number}: no device answered "
                "(check wiring, power and pull-ups)")
    lines = [f"/dev/i2c-{bus_number}: {len(found)} device(s)"]
    lines += [f"  0x{address:02x}  {name}" for address, name in sorted(found.items())]
    return "\n".join(lines)
