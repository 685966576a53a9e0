"""The service's wiring: the only code that opens buses.

Real hardware on a gateway; with ``simulate`` every bus is swapped for its fake: I2C
buses for ``FakeSMBus`` with the configured chips attached, serial ports for fakes
served on pseudo-terminals (opened with pyserial like the real port), GPIO for
gpiozero's ``MockFactory``. The drivers are the same either way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers import registry
from gateway.buslock import LockedSMBus
from gateway.config import Config, SensorConfig
from gateway.poller import Sensor, SensorSlot

if TYPE_CHECKING:
    from gateway.simulation import World

log = logging.getLogger(__name__)

SIM_FAULTS_ENV = "ALATAU_GATEWAY_SIM_FAULTS"
"""With ``--simulate``: a JSON file of faults for the emulated devices, re-read every
half second (scripts/soak drives the faults of a gateway it runs as a subprocess)."""

SERIAL_TIMEOUT_S = 0.2


class HardwareError(OSError):
    """A bus could not be opened (missing device node, permissions)."""


class PowerSwitch:
    """A sensor's supply behind a GPIO-driven switch (a MOSFET or load switch): pin high
    is on. Sensors sharing one switched rail share the pin, and a cycle of it."""

    def __init__(self, device: Any, on_restored: list[Callable[[], None]]) -> None:
        self.device = device
        self._on_restored = on_restored

    def off(self) -> None:
        self.device.off()

    def on(self) -> None:
        self.device.on()
        for restored in self._on_restored:
            restored()


class Hardware:
    def __init__(self, config: Config, *, simulate: bool = False,
                 world: World | None = None) -> None:
        self.config = config
        self.simulate = simulate
        if world is None and simulate:
            from gateway.simulation import World  # only a simulation needs it

            world = World()
        self.world = world
        self._i2c: dict[int, Any] = {}
        self._bus_locks: dict[int, threading.Lock] = {}
        self.fakes: dict[str, Any] = {}
        """Simulated devices by sensor name (``simulate`` only)."""
        self._closers: list[Any] = []
        self._ports: dict[str, Any] = {}
        self._power: dict[int, Any] = {}
        """Supply switches by GPIO (sensors may share one switched rail)."""
        self._lock = threading.Lock()
        self._pin_factory: Any = None
        self._stop = threading.Event()
        self._world_thread: threading.Thread | None = None

    # --- buses -------------------------------------------------------------------

    def i2c_bus(self, number: int) -> Any:
        with self._lock:
            if number not in self._i2c:
                if self.simulate:
                    from drivers.fake.i2c import FakeSMBus
                    self._i2c[number] = FakeSMBus(bus=number)
                else:
                    from smbus2 import SMBus
                    try:
                        self._i2c[number] = SMBus(number)
                    except OSError as exc:
                        raise HardwareError(
                            f"cannot open /dev/i2c-{number}: {exc.strerror} "
                            "(is I2C enabled, and is the user in group i2c?)") from None
                self._closers.append(self._i2c[number])
            return self._i2c[number]

    def serial_port(self, sensor: SensorConfig) -> Any:
        """Open the sensor's port; a port opened for it before (for a driver the poller
        gave up on: a re-plugged USB adapter leaves the old one dead) is closed first."""
        import serial

        assert sensor.port is not None
        old = self._ports.pop(sensor.name, None)
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()
        path = sensor.port
        if self.simulate:
            path = self._fake_for(sensor).port
        try:
            port = serial.Serial(path, baudrate=sensor.baudrate or 9600,
                                 timeout=SERIAL_TIMEOUT_S, **self._serial_framing(sensor))
        except (serial.SerialException, OSError) as exc:
            raise HardwareError(f"cannot open serial port {sensor.port}: {exc}") from None
        self._ports[sensor.name] = port
        return port

    @staticmethod
    def _serial_framing(sensor: SensorConfig) -> dict[str, Any]:
        framing: dict[str, Any] = {}
        for key in ("parity", "stopbits", "bytesize"):
            if key in sensor.options:
                framing[key] = sensor.options[key]
        return framing

    def power_switch(self, sensor: SensorConfig) -> PowerSwitch:
        """The switch on the sensor's supply (``power_pin``), on from the start."""
        assert sensor.power_pin is not None
        with self._lock:
            device = self._power.get(sensor.power_pin)
            if device is None:
                from gpiozero import DigitalOutputDevice

                device = DigitalOutputDevice(sensor.power_pin, initial_value=True,
                                             pin_factory=self.pin_factory())
                self._power[sensor.power_pin] = device
        sharing = [s.name for s in self.config.sensors if s.power_pin == sensor.power_pin]
        return PowerSwitch(device, [self._power_restored(name) for name in sharing]
                           if self.simulate else [])

    def _power_restored(self, name: str) -> Callable[[], None]:
        def restored() -> None:
            # An emulated chip that loses its supply forgets its faults (a latch-up
            # clears) and starts up as from cold.
            fake = self.fakes.get(name)
            if fake is not None:
                fake.faults.clear()
                power_cycle = getattr(fake, "power_cycle", None)
                if callable(power_cycle):
                    power_cycle()
        return restored

    def pin_factory(self) -> Any:
        if self._pin_factory is None and self.simulate:
            from drivers.fake.gpio import SIMULATION_PIN_HISTORY, mock_factory
            self._pin_factory = mock_factory(history=SIMULATION_PIN_HISTORY)
        return self._pin_factory

    # --- simulated devices ---------------------------------------------------------

    def _fake_for(self, sensor: SensorConfig) -> Any:
        with self._lock:
            if sensor.name in self.fakes:
                return self.fakes[sensor.name]
            spec = registry.get(sensor.driver)
            fake_class = spec.load_fake()
            if spec.kind == "i2c":
                fake = fake_class(sensor.address if sensor.address is not None
                                  else spec.default_address)
            else:
                kwargs: dict[str, Any] = {}
                if sensor.unit is not None:
                    kwargs["unit"] = sensor.unit
                fake = fake_class(**kwargs)
                fake.start()
                self._closers.append(fake)
            self.fakes[sensor.name] = fake
            self._apply_world(fake)
            return fake

    def _apply_world(self, fake: Any) -> None:
        if self.world is None:
            return
        values = self.world.values()
        known = getattr(fake, "QUANTITIES", {})
        wanted = {k: v for k, v in values.items() if k in known}
        if wanted:
            fake.set(**wanted)

    def start_world(self, period_s: float = 0.5) -> None:
        """Keep the fakes' physical values following the simulated world."""
        if not self.simulate or self._world_thread is not None:
            return

        fault_env = os.environ.get(SIM_FAULTS_ENV)
        fault_file = Path(fault_env) if fault_env else None  # made once: see store.py

        def loop() -> None:
            while not self._stop.wait(period_s):
                for fake in list(self.fakes.values()):
                    with contextlib.suppress(Exception):
                        self._apply_world(fake)
                if fault_file:
                    self._apply_fault_file(fault_file)

        self._world_thread = threading.Thread(target=loop, name="world", daemon=True)
        self._world_thread.start()

    def _apply_fault_file(self, path: Path) -> None:
        """Simulation only: set the emulated devices' faults from a JSON file, so a
        ``run --simulate`` in another process can be given sensor faults (scripts/soak).
        ``{"sensor name": {"nack": true}, ...}``; a device not named has none."""
        from drivers.fake.base import Faults

        try:
            wanted = json.loads(path.read_text())
        except (OSError, ValueError):
            return  # missing or half-written: keep the faults as they are
        if not isinstance(wanted, dict):
            return
        names = {f.name for f in dataclasses.fields(Faults)}
        for name, fake in list(self.fakes.items()):
            faults = wanted.get(name) or {}
            for field in names:
                default = getattr(Faults, field)
                value = faults.get(field, default) if isinstance(faults, dict) else default
                if getattr(fake.faults, field) != value:
                    setattr(fake.faults, field, value)

    # --- drivers -----------------------------------------------------------------

    def make_sensor(self, sensor: SensorConfig) -> Sensor:
        """Construct the sensor's driver on its (real or fake) bus; probes the chip."""
        spec = registry.get(sensor.driver)
        cls = spec.load()
        options = {k: v for k, v in sensor.options.items()
                   if k not in ("parity", "stopbits", "bytesize")}
        if spec.kind == "i2c":
            assert sensor.bus is not None
            bus = self.i2c_bus(sensor.bus)
            if self.simulate:
                fake = self._fake_for(sensor)
                if fake.address not in bus.devices:
                    bus.attach(fake)
            locked = LockedSMBus(bus, self._bus_locks.setdefault(sensor.bus, threading.Lock()))
            driver: Sensor = cls(locked, address=sensor.address, **options)
            return driver
        if sensor.unit is not None:
            options["unit"] = sensor.unit
        driver = cls(self.serial_port(sensor), **options)
        return driver

    def slots(self) -> list[SensorSlot]:
        slots = []
        for sensor in self.config.sensors:
            spec = registry.get(sensor.driver)
            # See gateway/buslock.py: a thread per I2C chip, a thread per serial port.
            bus_key = (f"i2c-{sensor.bus}-0x{sensor.address:02x}" if spec.kind == "i2c"
                       else f"tty-{sensor.port}")
            slot = SensorSlot(sensor, functools.partial(self.make_sensor, sensor), bus_key)
            if sensor.power_pin is not None:
                slot.power = self.power_switch(sensor)
            slots.append(slot)
        if self.simulate:
            # Fakes are made with their drivers (in make_sensor), so a fake that cannot be
            # made fails that one sensor, visibly in health, not the whole service.
            self.start_world()
        return slots

    def close(self) -> None:
        self._stop.set()
        for closer in [*self._ports.values(), *self._power.values()]:
            with contextlib.suppress(Exception):
                closer.close()
        self._ports.clear()
        self._power.clear()
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                closer.close()
        self._closers.clear()
        if self._pin_factory is not None:
            with contextlib.suppress(Exception):
                self._pin_factory.close()
