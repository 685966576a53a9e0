"""A simulated street: physical signals that drive the fake devices in ``--simulate``.

The signals move slowly, as real weather does, at each sensor's real resolution (the
fakes quantise like the chips). ``day_length_s`` compresses a day so the demo shows a
street light switching at dusk within a minute.
"""

from __future__ import annotations

import math
import random
import time


class World:
    def __init__(self, day_length_s: float = 86400.0, start_hour: float | None = None,
                 seed: int = 1) -> None:
        self.day_length_s = day_length_s
        self._t0 = time.monotonic()
        if start_hour is None:
            tm = time.localtime()
            start_hour = tm.tm_hour + tm.tm_min / 60
        self._phase0 = start_hour / 24.0
        self._rng = random.Random(seed)
        self._phase_rng = random.Random(seed + 1)
        self._noise: dict[str, float] = {}

    def hour(self, now: float | None = None) -> float:
        elapsed = (now if now is not None else time.monotonic()) - self._t0
        return ((self._phase0 + elapsed / self.day_length_s) % 1.0) * 24.0

    def _walk(self, name: str, scale: float) -> float:
        """A slow bounded random walk, so values wander instead of repeating."""
        value = self._noise.get(name, 0.0) * 0.98 + self._rng.gauss(0, scale)
        self._noise[name] = value
        return value

    def values(self, now: float | None = None) -> dict[str, float]:
        hour = self.hour(now)
        sun = math.sin(math.pi * (hour - 6.0) / 12.0)  # > 0 between 06:00 and 18:00
        daylight = max(0.0, sun)
        temperature = 12.0 + 8.0 * sun + self._walk("t", 0.05)
        humidity = min(99.0, max(5.0, 60.0 - 20.0 * sun + self._walk("h", 0.2)))
        lux = 0.0 if daylight <= 0 else 20000.0 * daylight ** 1.5
        if 0 < daylight < 0.05:
            lux = 400.0 * daylight / 0.05  # dusk and dawn
        lux = max(0.0, lux + abs(self._walk("l", 0.5)))
        load = 1.0 if daylight <= 0.02 else 0.1  # street lights draw at night
        current = 4.0 * load + abs(self._walk("i", 0.02))
        voltage = 230.0 + self._walk("v", 0.3)
        pf = 0.95
        # A three-phase cabinet (SDM630): the same supply, phases a little apart, the load
        # shared unevenly. Its own random stream, so the single-phase values above stay
        # what they were for a given seed.
        phases = {}
        for p, share in ((1, 0.40), (2, 0.35), (3, 0.25)):
            phases[f"voltage_l{p}_volts"] = voltage + self._phase_rng.gauss(0, 0.4)
            phases[f"current_l{p}_amperes"] = 3 * share * current
            phases[f"power_factor_l{p}"] = min(1.0, pf + self._phase_rng.gauss(0, 0.005))
        return {
            **phases,
            "temperature_celsius": temperature,
            "relative_humidity_percent": humidity,
            "pressure_pascals": 101325.0 + 300.0 * math.sin(hour / 24 * 2 * math.pi)
            + self._walk("p", 2.0),
            "illuminance_lux": lux,
            "co2_ppm": 420.0 + 80.0 * (1 - daylight) + abs(self._walk("c", 3.0)),
            "pm1_0_ugm3": max(0.0, 6.0 + self._walk("pm1", 0.5)),
            "pm2_5_ugm3": max(0.0, 11.0 + 4.0 * (1 - daylight) + self._walk("pm25", 0.8)),
            "pm10_ugm3": max(0.0, 19.0 + 6.0 * (1 - daylight) + self._walk("pm10", 1.0)),
            "voltage_volts": voltage,
            "current_amperes": current,
            "active_power_watts": voltage * current * pf,
            "frequency_hertz": 50.0 + self._walk("f", 0.005),
            "power_factor": pf,
            "ain0_voltage_volts": max(0.0, 1.65 + self._walk("a0", 0.01)),
            "ain1_voltage_volts": max(0.0, 0.8 + self._walk("a1", 0.01)),
            "ain2_voltage_volts": 0.0,
            "ain3_voltage_volts": 0.0,
        }
