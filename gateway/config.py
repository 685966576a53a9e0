"""The gateway's TOML configuration: parsed, validated in full at start, typed.

Every problem is reported at once, each naming its key path (``sensors[1].address``)
and, where it can be found, the line, so a technician fixes the file in one pass.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import math
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from drivers import registry

DEFAULT_CONFIG_PATH = "/etc/alatau-gateway/gateway.toml"
DEFAULT_HEALTH_LISTEN = "127.0.0.1:9108"


@dataclass(frozen=True)
class Problem:
    key: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.key}: {self.message}" if self.key else f"{where}{self.message}"


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


@dataclass(frozen=True)
class StorageConfig:
    path: str = "/var/lib/alatau-gateway/buffer.db"
    max_bytes: int = 256 * 1024 * 1024
    commit_interval: float = 1.0
    overflow: str = "drop_oldest"
    min_free_bytes: int = 32 * 1024 * 1024
    max_age: float | None = None


@dataclass(frozen=True)
class UplinkConfig:
    url: str
    token_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    batch_max_readings: int = 5000
    batch_max_bytes: int = 1024 * 1024
    flush_interval: float = 10.0
    compression: str = "gzip"
    timeout: float = 30.0
    backoff_initial: float = 1.0
    backoff_max: float = 300.0


@dataclass(frozen=True)
class HealthConfig:
    listen: str = DEFAULT_HEALTH_LISTEN
    stale_after: float | None = None


@dataclass(frozen=True)
class SensorConfig:
    name: str
    driver: str
    interval: float
    bus: int | None = None
    address: int | None = None
    port: str | None = None
    baudrate: int | None = None
    unit: int | None = None
    timeout: float = 5.0
    options: dict[str, Any] = field(default_factory=dict)
    power_pin: int | None = None
    """GPIO that switches the sensor's supply (high: on), for power cycling."""
    power_cycle_after: int = 10
    power_off_s: float = 2.0

    @property
    def kind(self) -> str:
        return registry.get(self.driver).kind


@dataclass(frozen=True)
class ActuatorConfig:
    name: str
    driver: str
    pin: int
    fail_safe: float
    min: float = 0.0
    max: float = 1.0
    active_high: bool = True
    frequency: float = 1000.0


@dataclass(frozen=True)
class RuleConfig:
    name: str
    sensor: str
    quantity: str
    actuator: str
    on_below: float | None = None
    off_above: float | None = None
    on_above: float | None = None
    off_below: float | None = None
    on_value: float = 1.0
    off_value: float = 0.0
    for_s: float = 0.0
    min_on_s: float = 0.0
    min_off_s: float = 0.0


@dataclass(frozen=True)
class ControlConfig:
    public_key: str | None = None
    public_key_file: str | None = None
    command_hold: float = 3600.0
    unreachable_fail_safe_after: float = 900.0
    state_path: str | None = None


@dataclass(frozen=True)
class Config:
    gateway_id: str
    storage: StorageConfig
    uplink: UplinkConfig
    health: HealthConfig
    sensors: tuple[SensorConfig, ...]
    actuators: tuple[ActuatorConfig, ...] = ()
    rules: tuple[RuleConfig, ...] = ()
    control: ControlConfig = ControlConfig()
    source: str = "<config>"

    def sensor(self, name: str) -> SensorConfig:
        for sensor in self.sensors:
            if sensor.name == name:
                return sensor
        known = ", ".join(s.name for s in self.sensors) or "none configured"
        raise KeyError(f"no sensor named {name!r} (known: {known})")

    def actuator(self, name: str) -> ActuatorConfig:
        for actuator in self.actuators:
            if actuator.name == name:
                return actuator
        known = ", ".join(a.name for a in self.actuators) or "none configured"
        raise KeyError(f"no actuator named {name!r} (known: {known})")


# --- a small schema: each key's type, default and check ------------------------------

Check = Callable[[Any], str | None]


@dataclass(frozen=True)
class Key:
    name: str
    types: tuple[type, ...]
    required: bool = False
    check: Check | None = None
    attribute: str | None = None

    @property
    def type_name(self) -> str:
        names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
                 dict: "a table", list: "an array"}
        types = [t for t in self.types if not (t is int and float in self.types)]
        return " or ".join(names.get(t, t.__name__) for t in types)  # an int is a number


NUMBER = (float, int)


def positive(value: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    return None if value > 0 else "must be greater than 0"


def at_least(minimum: float) -> Check:
    def check(value: Any) -> str | None:
        return None if value >= minimum else f"must be at least {minimum:g}"
    return check


def between(low: float, high: float) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        return None if low <= value <= high else f"must be between {low:g} and {high:g}"
    return check


def one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        if value in choices:
            return None
        hint = _did_you_mean(value, choices)
        return f"must be one of {', '.join(repr(c) for c in choices)}{hint}"
    return check


_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def gateway_id(value: Any) -> str | None:
    if _ID_RE.match(value):
        return None
    return "must be 1-64 characters of letters, digits, '.', '_' or '-'"


def sensor_name(value: Any) -> str | None:
    if _NAME_RE.match(value):
        return None
    return "must be snake_case: a lower-case letter, then letters, digits or '_' (max 64)"


def http_url(value: Any) -> str | None:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return "must be an http:// or https:// URL"
    return None


def host_port(value: Any) -> str | None:
    host, sep, port = value.rpartition(":")
    # Port 0 asks the kernel for a free port (tests, the demo).
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        return "must be HOST:PORT, for example 127.0.0.1:9108"
    return None


def _did_you_mean(word: Any, choices: Iterable[str]) -> str:
    if not isinstance(word, str):
        return ""
    import difflib  # only when there is an error to name

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


GATEWAY_KEYS = (Key("id", (str,), required=True, check=gateway_id),)
STORAGE_KEYS = (
    Key("path", (str,)),
    Key("max_bytes", (int,), check=at_least(1024 * 1024)),
    Key("commit_interval", NUMBER, check=between(0.01, 60)),
    Key("overflow", (str,), check=one_of("drop_oldest", "drop_newest")),
    Key("min_free_bytes", (int,), check=at_least(0)),
    Key("max_age", NUMBER, check=positive),
)
UPLINK_KEYS = (
    Key("url", (str,), required=True, check=http_url),
    Key("token_file", (str,)),
    Key("ca_file", (str,)),
    Key("cert_file", (str,)),
    Key("key_file", (str,)),
    Key("batch_max_readings", (int,), check=between(1, 100_000)),
    Key("batch_max_bytes", (int,), check=between(1024, 64 * 1024 * 1024)),
    Key("flush_interval", NUMBER, check=between(0.05, 3600)),
    Key("compression", (str,), check=one_of("gzip", "none")),
    Key("timeout", NUMBER, check=between(0.1, 600)),
    Key("backoff_initial", NUMBER, check=between(0.01, 600)),
    Key("backoff_max", NUMBER, check=between(0.1, 86400)),
)
HEALTH_KEYS = (
    Key("listen", (str,), check=host_port),
    Key("stale_after", NUMBER, check=positive),
)
SENSOR_KEYS = (
    Key("name", (str,), required=True, check=sensor_name),
    Key("driver", (str,), required=True),
    Key("interval", NUMBER, required=True, check=between(0.05, 86400)),
    Key("bus", (int,), check=between(0, 255)),
    Key("address", (int,), check=between(0x03, 0x77)),
    Key("port", (str,)),
    Key("baudrate", (int,), check=between(300, 4_000_000)),
    Key("unit", (int,), check=between(1, 247)),
    Key("timeout", NUMBER, check=between(0.01, 600)),
    Key("options", (dict,)),
    Key("power_pin", (int,), check=between(0, 53)),
    Key("power_cycle_after", (int,), check=between(1, 100_000)),
    Key("power_off", NUMBER, check=between(0.1, 600), attribute="power_off_s"),
)
ACTUATOR_KEYS = (
    Key("name", (str,), required=True, check=sensor_name),
    Key("driver", (str,), required=True),
    Key("pin", (int,), required=True, check=between(0, 53)),
    Key("fail_safe", (bool, float, int), required=True),
    Key("min", NUMBER),
    Key("max", NUMBER),
    Key("active_high", (bool,)),
    Key("frequency", NUMBER, check=between(1, 100_000)),
)
RULE_KEYS = (
    Key("name", (str,), required=True, check=sensor_name),
    Key("sensor", (str,), required=True),
    Key("quantity", (str,), required=True),
    Key("actuator", (str,), required=True),
    Key("on_below", NUMBER),
    Key("off_above", NUMBER),
    Key("on_above", NUMBER),
    Key("off_below", NUMBER),
    Key("on_value", (bool, float, int)),
    Key("off_value", (bool, float, int)),
    Key("for", NUMBER, check=at_least(0), attribute="for_s"),
    Key("min_on", NUMBER, check=at_least(0), attribute="min_on_s"),
    Key("min_off", NUMBER, check=at_least(0), attribute="min_off_s"),
)
def raw_key_base64(value: Any) -> str | None:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return "must be base64 (of the raw 32-byte Ed25519 public key)"
    return None if len(raw) == 32 else f"must be base64 of 32 raw bytes, not {len(raw)}"


CONTROL_KEYS = (
    Key("public_key", (str,), check=raw_key_base64),
    Key("public_key_file", (str,)),
    Key("command_hold", NUMBER, check=at_least(0)),
    Key("unreachable_fail_safe_after", NUMBER, check=positive),
    Key("state_path", (str,)),
)
TABLES = ("gateway", "storage", "uplink", "health", "sensors", "actuators", "rules", "control")


class _Locator:
    """Finds the line of a key path in the TOML text (tomllib does not keep positions)."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\"-]+)\s*\]\]?")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")

    def __init__(self, text: str) -> None:
        self.lines: dict[str, int] = {}
        table = ""
        counts: dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header:
                name = header.group(2).strip('"')
                if header.group(1) == "[[":
                    index = counts.get(name, -1) + 1
                    counts[name] = index
                    table = f"{name}[{index}]"
                    self.lines.setdefault(name, number)
                else:
                    table = name
                self.lines.setdefault(table, number)
                continue
            key = self._KEY.match(line)
            if key:
                path = f"{table}.{key.group(1)}" if table else key.group(1)
                self.lines.setdefault(path, number)

    def line(self, path: str) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            parent, dot, _ = path.rpartition(".")
            if not dot and path.endswith("]"):  # sensors[1] -> sensors
                parent = path.rpartition("[")[0]
            path = parent
        return None


class _Validator:
    def __init__(self, text: str) -> None:
        self.locator = _Locator(text)
        self.problems: list[Problem] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message, self.locator.line(path)))

    def table(self, data: Any, path: str, keys: tuple[Key, ...]) -> dict[str, Any]:
        """Check one table against its keys; returns the valid values by attribute name."""
        if not isinstance(data, dict):
            self.problem(path, "must be a table")
            return {}
        known = {k.name: k for k in keys}
        for name in data:
            if name not in known:
                hint = _did_you_mean(name, known)
                self.problem(f"{path}.{name}", f"unknown key{hint}")
        values: dict[str, Any] = {}
        for key in keys:
            key_path = f"{path}.{key.name}"
            if key.name not in data:
                if key.required:
                    self.problem(key_path, "is required")
                continue
            value = data[key.name]
            # TOML booleans are not numbers here, even though bool subclasses int.
            ok = isinstance(value, key.types) and not (
                isinstance(value, bool) and bool not in key.types
            )
            if not ok:
                self.problem(key_path, f"must be {key.type_name}, not {_describe(value)}")
                continue
            if key.check is not None:
                message = key.check(value)
                if message:
                    self.problem(key_path, message)
                    continue
            if float in key.types and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            values[key.attribute or key.name] = value
        return values

    def array(self, data: Any, path: str) -> list[Any]:
        if data is None:
            return []
        if not isinstance(data, list):
            self.problem(path, f"must be an array of tables ([[{path}]])")
            return []
        return data


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def parse(text: str, source: str = "<config>") -> Config:
    """Validate ``text`` in full; raise ``ConfigError`` listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        raise ConfigError(source, [Problem("", f"not valid TOML: {exc}", line)]) from None
    v = _Validator(text)
    for name in data:
        if name not in TABLES:
            v.problem(name, f"unknown table{_did_you_mean(name, TABLES)}")

    # A missing required table is one problem, not one more per required key in it.
    if "gateway" not in data:
        v.problem("gateway", "is required (at least gateway.id)")
    gateway = v.table(data["gateway"], "gateway", GATEWAY_KEYS) if "gateway" in data else {}
    storage = v.table(data.get("storage", {}), "storage", STORAGE_KEYS)
    if "uplink" not in data:
        v.problem("uplink", "is required (at least uplink.url)")
    uplink = v.table(data["uplink"], "uplink", UPLINK_KEYS) if "uplink" in data else {}
    health = v.table(data.get("health", {}), "health", HEALTH_KEYS)
    control = v.table(data.get("control", {}), "control", CONTROL_KEYS)
    if control.get("public_key") and control.get("public_key_file"):
        v.problem("control.public_key_file", "give public_key or public_key_file, not both")
    if uplink.get("cert_file") and not uplink.get("key_file"):
        v.problem("uplink.key_file", "is required when uplink.cert_file is set")

    sensors = _sensors(v, v.array(data.get("sensors"), "sensors"))
    actuators = _actuators(v, v.array(data.get("actuators"), "actuators"))
    rules = _rules(v, v.array(data.get("rules"), "rules"), sensors, actuators)
    actuator_pins = {a.pin: a.name for a in actuators}
    for i, sensor in enumerate(sensors):
        if sensor.power_pin in actuator_pins:
            v.problem(f"sensors[{_index_of(data, sensor.name, i)}].power_pin",
                      f"GPIO {sensor.power_pin} is already used by actuator "
                      f"{actuator_pins[sensor.power_pin]!r}")

    if v.problems:
        raise ConfigError(source, v.problems)
    return Config(
        gateway_id=gateway["id"],
        storage=StorageConfig(**storage),
        uplink=UplinkConfig(**uplink),
        health=HealthConfig(**health),
        sensors=tuple(sensors),
        actuators=tuple(actuators),
        rules=tuple(rules),
        control=ControlConfig(**control),
        source=source,
    )


def _index_of(data: dict[str, Any], name: str, default: int) -> int:
    """The position of the sensor called ``name`` in the TOML (invalid ones are skipped
    in the parsed list)."""
    items = data.get("sensors")
    if isinstance(items, list):
        for i, item in enumerate(items):
            if isinstance(item, dict) and item.get("name") == name:
                return i
    return default


def _unique(v: _Validator, path: str, index: int, name: str, seen: set[str]) -> None:
    if name in seen:
        v.problem(f"{path}[{index}].name", f"{name!r} is used twice")
    seen.add(name)


def _sensors(v: _Validator, items: list[Any]) -> list[SensorConfig]:
    out: list[SensorConfig] = []
    seen: set[str] = set()
    i2c_addresses: dict[tuple[int, int], str] = {}
    for i, item in enumerate(items):
        path = f"sensors[{i}]"
        values = v.table(item, path, SENSOR_KEYS)
        if "name" not in values or "driver" not in values or "interval" not in values:
            continue
        _unique(v, "sensors", i, values["name"], seen)
        spec = registry.DRIVERS.get(values["driver"])
        if spec is None or spec.kind == "gpio":
            known = ", ".join(registry.sensor_drivers())
            hint = _did_you_mean(values["driver"], registry.sensor_drivers())
            v.problem(f"{path}.driver", f"unknown sensor driver {values['driver']!r}{hint} "
                                        f"(known: {known})")
            continue
        if spec.kind == "i2c":
            for wrong in ("port", "baudrate", "unit"):
                if wrong in values:
                    v.problem(f"{path}.{wrong}", f"not used by I2C driver {spec.name!r}")
            values.setdefault("bus", 1)
            values.setdefault("address", spec.default_address)
            slot = (values["bus"], values["address"])
            if slot in i2c_addresses:
                v.problem(f"{path}.address", f"0x{slot[1]:02x} on bus {slot[0]} is already "
                                             f"used by sensor {i2c_addresses[slot]!r}")
            i2c_addresses[slot] = values["name"]
        else:
            for wrong in ("bus", "address"):
                if wrong in values:
                    v.problem(f"{path}.{wrong}", f"not used by serial driver {spec.name!r}")
            if "port" not in values:
                v.problem(f"{path}.port", f"is required for serial driver {spec.name!r}")
                continue
            values.setdefault("baudrate", spec.default_baudrate)
            if "unit" in values and not spec.name.startswith("sdm"):
                v.problem(f"{path}.unit", f"only Modbus meters take a unit, not {spec.name!r}")
        for message in _option_problems(spec, values.get("options", {})):
            v.problem(f"{path}.options", message)
        for key in ("power_cycle_after", "power_off_s"):
            if key in values and "power_pin" not in values:
                v.problem(f"{path}.{key.removesuffix('_s')}", "needs power_pin (the GPIO that "
                                                              "switches the sensor's supply)")
        out.append(SensorConfig(**values))
    return out


SERIAL_FRAMING_OPTIONS = ("parity", "stopbits", "bytesize")
"""Serial options that configure the port (pyserial), not the driver."""
_SET_BY_SERVICE = ("address", "unit", "pin_factory")


def _option_problems(spec: registry.DriverSpec, options: dict[str, Any]) -> list[str]:
    """Options the driver's constructor does not take, named with a did-you-mean.

    The driver module is imported to read its signature; drivers touch no hardware at
    import (STYLE.md), so this is safe in ``check-config`` on a laptop.
    """
    if not options:
        return []
    try:
        parameters = list(inspect.signature(spec.load()).parameters.values())
    except (ImportError, AttributeError, ValueError, TypeError):
        return []  # the registry test covers loadable drivers; nothing to check against
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return []
    accepted = [p.name for p in parameters[1:] if p.name not in _SET_BY_SERVICE]
    if spec.kind == "serial":
        accepted += SERIAL_FRAMING_OPTIONS
    problems = []
    for name in options:
        if name not in accepted:
            known = ", ".join(accepted) or "none"
            problems.append(f"{spec.name} takes no option {name!r}"
                            f"{_did_you_mean(name, accepted)} (it takes: {known})")
    return problems


def _actuators(v: _Validator, items: list[Any]) -> list[ActuatorConfig]:
    out: list[ActuatorConfig] = []
    seen: set[str] = set()
    pins: dict[int, str] = {}
    for i, item in enumerate(items):
        path = f"actuators[{i}]"
        values = v.table(item, path, ACTUATOR_KEYS)
        if not {"name", "driver", "pin", "fail_safe"} <= set(values):
            continue
        _unique(v, "actuators", i, values["name"], seen)
        driver = values["driver"]
        if driver not in registry.actuator_drivers():
            known = ", ".join(registry.actuator_drivers())
            hint = _did_you_mean(driver, registry.actuator_drivers())
            v.problem(f"{path}.driver", f"unknown actuator driver {driver!r}{hint} "
                                        f"(known: {known})")
            continue
        if values["pin"] in pins:
            v.problem(f"{path}.pin", f"GPIO {values['pin']} is already used by actuator "
                                     f"{pins[values['pin']]!r}")
        pins[values["pin"]] = values["name"]
        values["fail_safe"] = float(values["fail_safe"])
        low, high = values.get("min", 0.0), values.get("max", 1.0)
        if driver == "relay":
            if low not in (0.0, 1.0) or high not in (0.0, 1.0):
                v.problem(f"{path}.min", "a relay is on (1) or off (0): min and max must be 0 or 1")
            if "frequency" in values:
                v.problem(f"{path}.frequency", "not used by a relay")
        if not 0.0 <= low <= high <= 1.0:
            v.problem(f"{path}.max", f"bounds must satisfy 0 <= min <= max <= 1 "
                                     f"(got min={low:g}, max={high:g})")
        elif not low <= values["fail_safe"] <= high and values["fail_safe"] != 0.0:
            v.problem(f"{path}.fail_safe", f"{values['fail_safe']:g} is outside min..max "
                                           f"({low:g}..{high:g})")
        if driver == "relay" and values["fail_safe"] not in (0.0, 1.0):
            v.problem(f"{path}.fail_safe", "a relay's fail-safe state is 0 (off) or 1 (on)")
        out.append(ActuatorConfig(**values))
    return out


def _rules(v: _Validator, items: list[Any], sensors: list[SensorConfig],
           actuators: list[ActuatorConfig]) -> list[RuleConfig]:
    out: list[RuleConfig] = []
    seen: set[str] = set()
    sensor_names = [s.name for s in sensors]
    actuator_names = [a.name for a in actuators]
    driven_by: dict[str, str] = {}
    for i, item in enumerate(items):
        path = f"rules[{i}]"
        values = v.table(item, path, RULE_KEYS)
        if not {"name", "sensor", "quantity", "actuator"} <= set(values):
            continue
        _unique(v, "rules", i, values["name"], seen)
        if values["sensor"] not in sensor_names:
            v.problem(f"{path}.sensor", f"no sensor named {values['sensor']!r}"
                                        f"{_did_you_mean(values['sensor'], sensor_names)}")
        if values["actuator"] not in actuator_names:
            v.problem(f"{path}.actuator", f"no actuator named {values['actuator']!r}"
                                          f"{_did_you_mean(values['actuator'], actuator_names)}")
        falling = "on_below" in values and "off_above" in values
        rising = "on_above" in values and "off_below" in values
        if falling == rising:
            v.problem(path, "needs either on_below + off_above (e.g. lights on in the dark) "
                            "or on_above + off_below (e.g. a fan on when hot), not both")
            continue
        if falling and values["on_below"] >= values["off_above"]:
            v.problem(f"{path}.off_above", "must be greater than on_below (the hysteresis band)")
        if rising and values["on_above"] <= values["off_below"]:
            v.problem(f"{path}.off_below", "must be less than on_above (the hysteresis band)")
        for key in ("on_value", "off_value"):
            if key in values:
                values[key] = float(values[key])
        if values["actuator"] in driven_by:
            v.problem(f"{path}.actuator", f"{values['actuator']!r} is already driven by rule "
                                          f"{driven_by[values['actuator']]!r}; one rule per "
                                          "actuator")
        driven_by.setdefault(values["actuator"], values["name"])
        for actuator in actuators:
            if actuator.name != values["actuator"]:
                continue
            for key, default in (("on_value", 1.0), ("off_value", 0.0)):
                value = values.get(key, default)
                relay_ok = actuator.driver != "relay" or value in (0.0, 1.0)
                if not (relay_ok and actuator.min <= value <= actuator.max):
                    v.problem(f"{path}.{key}", f"{value:g} is outside the bounds of actuator "
                                               f"{actuator.name!r} "
                                               f"({actuator.min:g}..{actuator.max:g})")
        out.append(RuleConfig(**values))
    return out


def load(path: str | Path) -> Config:
    """Read and validate the file at ``path``."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, [Problem("", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [Problem("", f"cannot read: {exc}")]) from None
    return parse(text, source)
