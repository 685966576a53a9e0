"""Configuration: every table accepted, every mistake reported with its key and line,
and ``alatau-gateway check-config`` plus bad command lines as a technician meets them."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from drivers import registry
from gateway.config import ConfigError, Problem, parse

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_KEY = base64.b64encode(bytes(range(32))).decode()

MINIMAL = """
[gateway]
id = "alatau-cab-0001"

[storage]
path = "/var/lib/alatau-gateway/buffer.db"   # the buffer's database file
max_bytes = 268435456
commit_interval = 1.0

[uplink]
url = "https://ingest.example.city/v1/batches"   # ca/cert/key files optional
token_file = "/etc/alatau-gateway/token"
flush_interval = 10.0

[[sensors]]
name = "cabinet_air"
driver = "bme280"
bus = 1              # /dev/i2c-1
address = 0x76
interval = 10.0

[[sensors]]
name = "street_pm"
driver = "pms5003"
port = "/dev/serial0"
baudrate = 9600
interval = 60.0
"""

FULL = f"""
[gateway]
id = "alatau-cab-0042"

[storage]
path = "/var/lib/alatau-gateway/buffer.db"
max_bytes = 134217728
commit_interval = 0.5
overflow = "drop_newest"
min_free_bytes = 0
max_age = 604800

[uplink]
url = "https://ingest.example.city/v1/batches"
token_file = "/etc/alatau-gateway/token"
ca_file = "/etc/alatau-gateway/ca.pem"
cert_file = "/etc/alatau-gateway/client.pem"
key_file = "/etc/alatau-gateway/client.key"
batch_max_readings = 2000
batch_max_bytes = 524288
flush_interval = 15
compression = "none"
timeout = 20.0
backoff_initial = 0.5
backoff_max = 120

[health]
listen = "0.0.0.0:9108"
stale_after = 300

[[sensors]]
name = "cabinet_air"
driver = "bme280"
bus = 1
address = 0x77
interval = 10.0

[[sensors]]
name = "street_light_level"
driver = "bh1750"
interval = 5
timeout = 2.5

[[sensors]]
name = "street_co2"
driver = "scd4x"
interval = 30.0

[[sensors]]
name = "analog_in"
driver = "ads1115"
bus = 3
interval = 1.0
options = {{ channels = [0, 1], gain = 2 }}

[[sensors]]
name = "street_pm"
driver = "pms5003"
port = "/dev/serial0"
interval = 60.0

[[sensors]]
name = "cabinet_energy"
driver = "sdm120"
port = "/dev/ttyUSB0"
baudrate = 2400
unit = 7
interval = 10.0

[[actuators]]
name = "street_light"
driver = "relay"
pin = 17
fail_safe = 1
active_high = false

[[actuators]]
name = "cabinet_fan"
driver = "dimmer"
pin = 18
fail_safe = 0.3
min = 0.2
max = 0.9
frequency = 500

[[rules]]
name = "lights_at_dusk"
sensor = "street_light_level"
quantity = "illuminance_lux"
actuator = "street_light"
on_below = 20.0
off_above = 40.0
for = 60
min_on = 300
min_off = 300

[[rules]]
name = "fan_when_hot"
sensor = "cabinet_air"
quantity = "temperature_celsius"
actuator = "cabinet_fan"
on_above = 35
off_below = 30
on_value = 0.9
off_value = 0.2

[control]
public_key = "{PUBLIC_KEY}"
command_hold = 1800
unreachable_fail_safe_after = 600
state_path = "/var/lib/alatau-gateway/commands.json"
"""


def problems(text: str) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        parse(text, "gw.toml")
    return info.value.problems


def only_problem(text: str) -> Problem:
    found = problems(text)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


# --- accepted ------------------------------------------------------------------------


def test_the_design_documents_minimal_file_is_accepted() -> None:
    cfg = parse(MINIMAL)
    assert cfg.gateway_id == "alatau-cab-0001"
    assert [(s.name, s.driver) for s in cfg.sensors] == [("cabinet_air", "bme280"),
                                                         ("street_pm", "pms5003")]
    assert cfg.sensors[0].bus == 1 and cfg.sensors[0].address == 0x76
    assert cfg.sensors[1].port == "/dev/serial0" and cfg.sensors[1].baudrate == 9600
    assert cfg.storage.overflow == "drop_oldest"  # defaults fill in the rest
    assert cfg.uplink.compression == "gzip"
    assert cfg.health.listen == "127.0.0.1:9108"


def test_every_table_and_key_is_accepted_and_typed() -> None:
    cfg = parse(FULL)
    assert cfg.gateway_id == "alatau-cab-0042"
    s = cfg.storage
    assert (s.max_bytes, s.commit_interval, s.overflow, s.min_free_bytes, s.max_age) == (
        134217728, 0.5, "drop_newest", 0, 604800.0)
    u = cfg.uplink
    assert u.url == "https://ingest.example.city/v1/batches"
    assert (u.token_file, u.ca_file, u.cert_file, u.key_file) == (
        "/etc/alatau-gateway/token", "/etc/alatau-gateway/ca.pem",
        "/etc/alatau-gateway/client.pem", "/etc/alatau-gateway/client.key")
    assert (u.batch_max_readings, u.batch_max_bytes, u.flush_interval, u.compression,
            u.timeout, u.backoff_initial, u.backoff_max) == (
        2000, 524288, 15.0, "none", 20.0, 0.5, 120.0)
    assert isinstance(u.flush_interval, float)  # an integer where seconds are asked
    assert (cfg.health.listen, cfg.health.stale_after) == ("0.0.0.0:9108", 300.0)
    sensors = {x.name: x for x in cfg.sensors}
    assert sensors["cabinet_air"].address == 0x77
    assert (sensors["street_light_level"].bus, sensors["street_light_level"].address) == (
        1, 0x23)  # the chip's usual address on bus 1
    assert sensors["street_light_level"].timeout == 2.5
    assert sensors["analog_in"].options == {"channels": [0, 1], "gain": 2}
    assert sensors["street_pm"].baudrate == 9600
    assert (sensors["cabinet_energy"].unit, sensors["cabinet_energy"].baudrate) == (7, 2400)
    light, fan = cfg.actuator("street_light"), cfg.actuator("cabinet_fan")
    assert (light.pin, light.fail_safe, light.active_high) == (17, 1.0, False)
    assert (fan.min, fan.max, fan.fail_safe, fan.frequency) == (0.2, 0.9, 0.3, 500.0)
    dusk, hot = cfg.rules
    assert (dusk.on_below, dusk.off_above, dusk.for_s, dusk.min_on_s) == (20.0, 40.0, 60, 300)
    assert (hot.on_above, hot.off_below, hot.on_value, hot.off_value) == (35.0, 30.0, 0.9, 0.2)
    c = cfg.control
    assert (c.public_key, c.command_hold, c.unreachable_fail_safe_after, c.state_path) == (
        PUBLIC_KEY, 1800.0, 600.0, "/var/lib/alatau-gateway/commands.json")


def test_same_address_on_two_buses_is_fine() -> None:
    cfg = parse(MINIMAL + '\n[[sensors]]\nname = "other"\ndriver = "bme280"\nbus = 0\n'
                          'address = 0x76\ninterval = 1\n')
    assert len(cfg.sensors) == 3


# --- refused, with key path and line ---------------------------------------------------


def test_unknown_key_names_path_line_and_suggests() -> None:
    text = MINIMAL.replace("commit_interval = 1.0", "comit_interval = 1.0")
    p = only_problem(text)
    assert p.key == "storage.comit_interval"
    assert p.line == text.splitlines().index("comit_interval = 1.0") + 1
    assert "unknown key" in p.message and "did you mean 'commit_interval'?" in p.message


def test_unknown_table_suggests_the_right_one() -> None:
    text = MINIMAL.replace("[[sensors]]", "[[sensor]]", 1)
    found = {p.key: p for p in problems(text)}
    assert "did you mean 'sensors'?" in found["sensor"].message
    assert found["sensor"].line == text.splitlines().index("[[sensor]]") + 1


@pytest.mark.parametrize(("old", "new", "key", "expected"), [
    ("max_bytes = 268435456", 'max_bytes = "256M"', "storage.max_bytes",
     "must be an integer, not '256M'"),
    ("\ninterval = 10.0", "\ninterval = true", "sensors[0].interval",
     "must be a number, not true/false"),
    ("interval = 60.0", 'interval = "60"', "sensors[1].interval", "must be a number, not '60'"),
    ('url = "https://ingest.example.city/v1/batches"', "url = 8080", "uplink.url",
     "must be a string, not 8080"),
    ("address = 0x76", 'address = "0x76"', "sensors[0].address",
     "must be an integer, not '0x76'"),
    ("bus = 1 ", "bus = [1]", "sensors[0].bus", "must be an integer, not an array"),
])
def test_wrong_types_are_named(old: str, new: str, key: str, expected: str) -> None:
    assert old in MINIMAL
    text = MINIMAL.replace(old, new)
    p = only_problem(text)
    assert (p.key, p.message) == (key, expected)
    assert p.line == next(i for i, line in enumerate(text.splitlines(), 1)
                          if line.startswith(new.strip()))


@pytest.mark.parametrize(("old", "new", "key", "expected"), [
    ('commit_interval = 1.0', 'commit_interval = nan', "storage.commit_interval",
     "must be a finite number"),
    ("max_bytes = 268435456", "max_bytes = 1000", "storage.max_bytes", "must be at least"),
    ("commit_interval = 1.0", 'overflow = "drop_oldes"', "storage.overflow",
     "did you mean 'drop_oldest'?"),
    ('url = "https://ingest.example.city/v1/batches"', 'url = "ftp://x/y"', "uplink.url",
     "http:// or https://"),
    ('id = "alatau-cab-0001"', 'id = "cabinet 1"', "gateway.id", "letters, digits"),
    ('name = "cabinet_air"', 'name = "Cabinet Air"', "sensors[0].name", "snake_case"),
    ("address = 0x76", "address = 0x80", "sensors[0].address", "between 3 and 119"),
])
def test_out_of_range_values_are_named(old: str, new: str, key: str, expected: str) -> None:
    p = only_problem(MINIMAL.replace(old, new))
    assert p.key == key and expected in p.message, str(p)


def test_unknown_driver_lists_the_known_ones() -> None:
    text = MINIMAL.replace('driver = "bme280"', 'driver = "bme208"')
    p = only_problem(text)
    assert p.key == "sensors[0].driver"
    assert p.line == text.splitlines().index('driver = "bme208"') + 1
    assert "did you mean 'bme280'?" in p.message
    for name in registry.sensor_drivers():
        assert name in p.message
    assert "relay" not in p.message  # an actuator is not a sensor driver


def test_an_actuator_driver_is_not_a_sensor_and_vice_versa() -> None:
    bad_actuator = ('\n[[actuators]]\nname = "light"\ndriver = "bme280"\npin = 17\n'
                    'fail_safe = 0\n')
    p = only_problem(MINIMAL + bad_actuator)
    assert p.key == "actuators[0].driver" and "dimmer, relay" in p.message


@pytest.mark.parametrize("table", ["sensors", "actuators", "rules"])
def test_duplicate_names_are_refused(table: str) -> None:
    extra = {
        "sensors": '[[sensors]]\nname = "cabinet_air"\ndriver = "sht31"\ninterval = 1\n',
        "actuators": ('[[actuators]]\nname = "light"\ndriver = "relay"\npin = 5\n'
                      'fail_safe = 0\n[[actuators]]\nname = "light"\ndriver = "relay"\n'
                      'pin = 6\nfail_safe = 0\n'),
        "rules": "".join(f'[[actuators]]\nname = "light{n}"\ndriver = "relay"\npin = {n}\n'
                         f'fail_safe = 0\n' for n in (2, 3))
        + "".join(f'[[rules]]\nname = "dusk"\nsensor = "cabinet_air"\nquantity = "q"\n'
                  f'actuator = "light{n}"\non_below = 1\noff_above = {n}\n' for n in (2, 3)),
    }[table]
    text = MINIMAL + "\n" + extra
    p = only_problem(text)
    assert p.message.endswith("is used twice")
    assert p.key.startswith(f"{table}[") and p.key.endswith("].name")
    lines = text.splitlines()
    assert lines[p.line - 1].startswith("name = ")  # type: ignore[operator]
    assert p.line == max(i for i, line in enumerate(lines, 1)
                         if line == lines[p.line - 1])  # type: ignore[operator]


def test_i2c_address_clash_names_both_sensors() -> None:
    text = MINIMAL + '\n[[sensors]]\nname = "cabinet_rh"\ndriver = "sht31"\naddress = 0x76\n' \
                     'interval = 5\n'
    p = only_problem(text)
    assert p.key == "sensors[2].address"
    assert p.line == len(text.splitlines()) - 1
    assert p.message == "0x76 on bus 1 is already used by sensor 'cabinet_air'"


def test_i2c_clash_through_default_addresses() -> None:
    """An SHT31 and an SHT4x both default to 0x44: a clash nobody wrote down."""
    text = MINIMAL + ('\n[[sensors]]\nname = "a"\ndriver = "sht31"\ninterval = 5\n'
                      '[[sensors]]\nname = "b"\ndriver = "sht4x"\ninterval = 5\n')
    p = only_problem(text)
    assert p.key == "sensors[3].address" and "0x44 on bus 1" in p.message and "'a'" in p.message


def test_toml_syntax_error_gives_the_line() -> None:
    text = MINIMAL.replace("[uplink]", "[uplink")
    p = only_problem(text)
    assert p.line == text.splitlines().index("[uplink") + 1
    assert "not valid TOML" in p.message


def test_every_problem_is_reported_at_once() -> None:
    text = (MINIMAL.replace("commit_interval = 1.0", "commit_interval = -1")
            .replace('driver = "pms5003"', 'driver = "pms9999"')
            .replace("flush_interval = 10.0", "flush_intervall = 10.0"))
    keys = sorted(p.key for p in problems(text))
    assert keys == ["sensors[1].driver", "storage.commit_interval", "uplink.flush_intervall"]


def test_missing_required_tables_are_one_problem_each() -> None:
    assert sorted(str(p) for p in problems("")) == [
        "gateway: is required (at least gateway.id)", "uplink: is required (at least uplink.url)"]


# --- check-config --------------------------------------------------------------------


def test_check_config_accepts_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(FULL)
    result = cli("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.strip() == f"{path}: valid (6 sensors, 2 actuators, 2 rules)"


def test_check_config_prints_one_line_per_error_with_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    text = (MINIMAL.replace("commit_interval = 1.0", "comit_interval = 1.0")
            .replace('driver = "pms5003"', 'driver = "pms5030"')
            .replace("\ninterval = 10.0", "\ninterval = true"))
    path.write_text(text)
    lines = text.splitlines()
    driver_line = lines.index('driver = "pms5030"') + 1
    result = cli("check-config", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"{path}: line {lines.index('comit_interval = 1.0') + 1}: storage.comit_interval: "
        "unknown key (did you mean 'commit_interval'?)",
        f"{path}: line {lines.index('interval = true') + 1}: sensors[0].interval: "
        "must be a number, not true/false",
        f"{path}: line {driver_line}: sensors[1].driver: "
        "unknown sensor driver 'pms5030' (did you mean 'pms5003'?) (known: "
        f"{', '.join(registry.sensor_drivers())})",
    ]


@pytest.mark.parametrize(("content", "expected"), [
    (None, "file not found"),
    (b"[gateway\nid = 1\n", "line 1: not valid TOML"),
    (b"\xff\xfe[gateway]\n", "cannot read"),
])
def test_check_config_unreadable_files_get_one_line(tmp_path: Path, content: bytes | None,
                                                    expected: str) -> None:
    path = tmp_path / "gateway.toml"
    if content is not None:
        path.write_bytes(content)
    result = cli("check-config", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"{path}: ") and expected in result.stderr


# --- bad command lines ---------------------------------------------------------------


@pytest.mark.parametrize(("args", "expected"), [
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "required: COMMAND"),
    (["demo", "--outage", "5"], "--outage '5': expected START:END"),
    (["demo", "--outage", "a:b"], "START and END must be numbers"),
    (["demo", "--outage", "20:10"], "need 0 <= START < END"),
    (["demo", "--duration", "-3"], "--duration: '-3' must be a number greater than 0"),
    (["demo", "--duration", "inf"], "--duration: 'inf' must be a number greater than 0"),
    (["run", "--config", "/nonexistent/gateway.toml"], "/nonexistent/gateway.toml: file not found"),
    (["buffer", "stats", "--config", "/nonexistent/gateway.toml"], "file not found"),
    (["buffer", "shred", "--config", "x.toml"], "invalid choice: 'shred'"),
    (["check-config"], "required: PATH"),
    (["cloud", "--listen", "127.0.0.1:99999", "--db", "c.db"], "--listen '127.0.0.1:99999'"),
    (["cloud", "--listen", "127.0.0.1:0", "--db", "not-a-dir/c.db"],
     "--db not-a-dir/c.db: cannot open"),
])
def test_bad_arguments_get_one_line_and_exit_2(tmp_path: Path, args: list[str],
                                               expected: str) -> None:
    (tmp_path / "not-a-dir").write_text("a file where a directory is expected\n")
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("alatau-gateway")
    assert expected in result.stderr
    assert result.stdout == ""


def test_run_with_an_invalid_config_lists_the_problems(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(MINIMAL.replace("interval = 60.0", "interval = 0"))
    result = cli("run", "--config", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().endswith("sensors[1].interval: must be between 0.05 and 86400")


def test_driver_options_are_checked_against_the_driver() -> None:
    text = """
[gateway]
id = "x"
[uplink]
url = "http://127.0.0.1:9/"
[[sensors]]
name = "adc"
driver = "ads1115"
interval = 1
options = { channels = [0, 1], gian = 2 }
[[sensors]]
name = "meter"
driver = "sdm120"
port = "/dev/ttyUSB0"
interval = 1
options = { parity = "E", timeout_s = 2.0 }
"""
    with pytest.raises(ConfigError) as info:
        parse(text, "g.toml")
    (problem,) = info.value.problems
    assert problem.key == "sensors[0].options"
    assert "'gian' (did you mean 'gain'?)" in problem.message
    assert problem.line == 10
