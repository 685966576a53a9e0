"""The controller's outputs: fail-safe at start, at stop and when the cloud is
unreachable; a technician's ``actuate`` through the running service or directly; and
what /healthz, /metrics and ``status`` show. Pins are gpiozero MockFactory pins."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from drivers.fake.gpio import mock_factory
from gateway.cli import main
from gateway.cloud import CloudServer
from gateway.control import actuate_by_hand, socket_path
from gateway.control import outputs as outputs_mod
from gateway.health import metrics_text
from gateway.service import Gateway
from gateway.status_view import render_status
from tests.control_fixtures import (
    DIMMER_PIN,
    FAN_PIN,
    LIGHT_PIN,
    config_text,
    make_config,
    make_rig,
    signed,
)

UNREACHABLE_AFTER = 900.0


# --- fail-safe at start and stop ----------------------------------------------------------
def test_every_output_starts_in_its_fail_safe_state(tmp_path: Path):
    rig = make_rig(tmp_path)
    assert (rig.pin(LIGHT_PIN), rig.pin(FAN_PIN), rig.pin(DIMMER_PIN)) == (1.0, 0.0, 0.0)
    states = {n: (a.value, a.source) for n, a in rig.telemetry.actuators.items()}
    assert states == {"street_light": (1.0, "fail_safe"), "fan": (0.0, "fail_safe"),
                      "lamp_dimmer": (0.0, "fail_safe")}


def test_a_clean_stop_returns_every_output_to_fail_safe_before_releasing_it(
        tmp_path: Path, monkeypatch):
    rig = make_rig(tmp_path)
    for_pin = {"street_light": LIGHT_PIN, "fan": FAN_PIN, "lamp_dimmer": DIMMER_PIN}
    at_release: dict[str, float] = {}
    original = outputs_mod.Output.close

    def close(self: outputs_mod.Output) -> None:
        at_release[self.name] = rig.pin(for_pin[self.name])
        original(self)

    monkeypatch.setattr(outputs_mod.Output, "close", close)
    for _ in range(40):  # daylight: the rule switches the street light off
        rig.light_reading(5000.0)
        rig.tick(10.0)
    rig.reply(signed("c-1", "fan", 1, not_after=rig.clock.wall + 1000),
              signed("c-2", "lamp_dimmer", 0.6, not_after=rig.clock.wall + 1000))
    assert (rig.pin(LIGHT_PIN), rig.pin(FAN_PIN), rig.pin(DIMMER_PIN)) == (0.0, 1.0, 0.6)
    rig.controller.stop()
    assert at_release == {"street_light": 1.0, "fan": 0.0, "lamp_dimmer": 0.0}
    assert {a.source for a in rig.telemetry.actuators.values()} == {"fail_safe"}


def test_an_actuator_that_cannot_be_opened_is_reported_and_the_rest_run(tmp_path: Path):
    from gpiozero import OutputDevice

    factory = mock_factory()  # another program holds the fan's pin

    holder = OutputDevice(FAN_PIN, pin_factory=factory)
    rig = make_rig(tmp_path, factory=factory)
    assert holder.value == 0
    fan = rig.telemetry.actuators["fan"]
    assert fan.value is None and fan.last_command.startswith("unavailable: actuator fan")
    assert rig.pin(LIGHT_PIN) == 1.0
    result = rig.reply(signed("c-1", "fan", 1))
    assert result[0]["status"] == "failed" and result[0]["reason"] == "actuator_error"


def test_a_pin_that_fails_is_logged_once_and_never_stops_the_loop(tmp_path: Path, caplog):
    rig = make_rig(tmp_path)

    class Broken:
        def set(self, value: float) -> None:
            raise OSError(5, "Input/output error")

        def close(self) -> None:
            pass

    rig.controller.outputs["street_light"].driver = Broken()
    rig.controller.outputs["fan"].driver = Broken()
    for _ in range(40):  # daylight: the rule keeps trying to switch the light off
        rig.light_reading(5000.0)
        rig.tick(10.0)
    light = rig.telemetry.actuators["street_light"]
    assert (light.value, light.source) == (1.0, "fail_safe")
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == ["actuator street_light: cannot set 0: OSError: [Errno 5] "
                      "Input/output error"]
    result = rig.reply(signed("c-1", "fan", 1, not_after=rig.clock.wall + 1000))
    assert (result[0]["status"], result[0]["reason"]) == ("failed", "actuator_error")
    assert rig.telemetry.actuators["fan"].last_command == "c-1: 1 failed (actuator_error)"


# --- the cloud unreachable ----------------------------------------------------------------
def _failing_since(rig, seconds: float) -> None:
    """The uploader keeps trying and failing for ``seconds`` after its last success."""
    up = rig.telemetry.uplink
    up.last_success_mono = rig.clock.mono
    step = 10.0
    elapsed = 0.0
    while elapsed + step <= seconds:
        rig.clock.advance(step)
        elapsed += step
        up.last_attempt_mono = rig.clock.mono
        rig.light_reading(5000.0)
        rig.controller.tick(rig.clock.mono)
    rig.tick(seconds - elapsed)


def test_unreachable_cloud_sends_command_held_outputs_to_fail_safe(tmp_path: Path):
    rig = make_rig(tmp_path)
    for _ in range(40):
        rig.light_reading(5000.0)
        rig.tick(10.0)
    assert rig.pin(LIGHT_PIN) == 0.0  # the rule, in daylight
    rig.reply(signed("c-1", "fan", 1, not_after=rig.clock.wall + 1000))
    assert rig.pin(FAN_PIN) == 1.0
    _failing_since(rig, UNREACHABLE_AFTER - 1)
    assert rig.pin(FAN_PIN) == 1.0
    rig.tick(1.0)
    assert rig.controller.unreachable
    assert rig.pin(FAN_PIN) == 0.0
    assert rig.telemetry.actuators["fan"].source == "fail_safe"
    # The local rule keeps working offline.
    assert rig.pin(LIGHT_PIN) == 0.0
    assert rig.telemetry.actuators["street_light"].source == "rule"


def test_the_cloud_back_lets_commands_drive_again(tmp_path: Path):
    rig = make_rig(tmp_path)
    _failing_since(rig, UNREACHABLE_AFTER + 5)
    assert rig.controller.unreachable
    rig.telemetry.uplink.last_success_mono = rig.clock.mono
    rig.reply(signed("c-1", "fan", 1, not_after=rig.clock.wall + 1000))
    rig.tick(1.0)
    assert not rig.controller.unreachable
    assert rig.pin(FAN_PIN) == 1.0


def test_a_cloud_never_reached_since_start_counts_from_start(tmp_path: Path):
    rig = make_rig(tmp_path)
    rig.controller.manual("fan", 1.0)
    rig.controller.overrides.clear()  # as if the hold were over: nothing drives the fan
    up = rig.telemetry.uplink
    for _ in range(89):
        rig.tick(10.0)
        up.last_attempt_mono = rig.clock.mono
    assert rig.pin(FAN_PIN) == 1.0
    rig.tick(10.0)
    assert rig.pin(FAN_PIN) == 0.0


def test_an_idle_uploader_is_not_an_unreachable_cloud(tmp_path: Path):
    rig = make_rig(tmp_path)
    rig.telemetry.uplink.last_attempt_mono = rig.clock.mono - 1
    rig.telemetry.uplink.last_success_mono = rig.clock.mono
    rig.reply(signed("c-1", "fan", 1, not_after=rig.clock.wall + 1000))
    for _ in range(200):  # nothing to send for 2000 s: no attempt, no failure
        rig.tick(10.0)
    assert not rig.controller.unreachable
    assert rig.pin(FAN_PIN) == 1.0


def test_a_technicians_value_outlives_an_unreachable_cloud(tmp_path: Path):
    rig = make_rig(tmp_path, control="command_hold = 3600.0\n"
                                     f"unreachable_fail_safe_after = {UNREACHABLE_AFTER}\n")
    rig.controller.manual("fan", 1.0)
    _failing_since(rig, UNREACHABLE_AFTER + 10)
    assert rig.controller.unreachable
    assert rig.pin(FAN_PIN) == 1.0
    assert rig.telemetry.actuators["fan"].source == "manual"


# --- by hand, inside the controller -------------------------------------------------------
def test_manual_values_are_checked_held_and_handed_back(tmp_path: Path):
    rig = make_rig(tmp_path)
    with pytest.raises(KeyError, match=r"no actuator named 'pump' \(known: street_light, fan, "
                                       r"lamp_dimmer\)"):
        rig.controller.manual("pump", 1.0)
    with pytest.raises(ValueError, match=r"0.95 is out of bounds for actuator lamp_dimmer "
                                         r"\(allowed: 0.2..0.9\)"):
        rig.controller.manual("lamp_dimmer", 0.95)
    message = rig.controller.manual("street_light", 0.0)
    assert message.startswith("street_light = 0 (set by the running service; held 600 s")
    assert rig.pin(LIGHT_PIN) == 0.0
    for _ in range(59):  # dark: the rule wants the light on, but the hold is 600 s
        rig.light_reading(1.0)
        rig.tick(10.0)
    assert rig.pin(LIGHT_PIN) == 0.0
    assert rig.controller.manual("street_light", None) == \
        "street_light: back to automatic control, now 1 (rule)"
    assert rig.pin(LIGHT_PIN) == 1.0
    rig.controller.manual("fan", 1.0)
    assert rig.controller.manual("fan", None) == \
        "fan: back to automatic control, now 0 (fail_safe)"


# --- by hand, from the command line -------------------------------------------------------
def test_actuate_without_a_service_drives_the_pin_and_releases_it_to_fail_safe(tmp_path):
    config = make_config(tmp_path)
    factory = mock_factory()
    seen: list[float] = []
    message = actuate_by_hand(config, "fan", "on", simulate=True, pin_factory=factory,
                              hold=lambda: seen.append(factory.pin(FAN_PIN).state))
    assert seen == [1.0]
    assert message == "fan released: back to fail-safe 0"


def test_actuate_without_a_service_in_simulation_reports_what_it_did(tmp_path: Path):
    config = make_config(tmp_path)
    socket_path(config).write_bytes(b"")  # left behind by a crashed service
    assert actuate_by_hand(config, "lamp_dimmer", "0.5", simulate=True) == \
        "lamp_dimmer = 0.5 on GPIO 18 (simulated) (directly: no service is running)"


def test_auto_needs_the_running_service(tmp_path: Path):
    with pytest.raises(ValueError, match="'auto' hands an actuator back to the running "
                                         "service, but none answers at"):
        actuate_by_hand(make_config(tmp_path), "fan", "auto", simulate=True)


@pytest.mark.parametrize(("args", "code", "text"), [
    (["fan", "on"], 0, "fan = 1 on GPIO 22 (simulated) (directly: no service is running)"),
    (["pump", "on"], 2, "no actuator named 'pump' (known: street_light, fan, lamp_dimmer)"),
    (["fan", "0.5"], 2, "0.5 is out of bounds for actuator fan (allowed: 0/off or 1/on)"),
    (["lamp_dimmer", "1"], 2, "1 is out of bounds for actuator lamp_dimmer (allowed: "
                              "0.2..0.9)"),
    (["fan", "maybe"], 2, "VALUE 'maybe': expected on, off, auto or a number"),
])
def test_the_actuate_command(tmp_path: Path, capsys, args, code, text):
    path = tmp_path / "gateway.toml"
    path.write_text(config_text(tmp_path))
    assert main(["actuate", *args, "--config", str(path), "--simulate"]) == code
    out, err = capsys.readouterr()
    if code == 0:
        assert out.strip() == text and err == ""
    else:
        assert err.strip() == f"alatau-gateway actuate: {text}"
        assert "Traceback" not in err


def test_actuate_talks_to_the_running_service(tmp_path: Path):
    """The service holds the pins: actuate goes through its socket, and /healthz,
    /metrics and status show who drives what."""
    short = Path(tempfile.mkdtemp(prefix="ag-", dir="/tmp"))  # Unix socket paths are short

    async def go() -> None:
        cloud = CloudServer(tmp_path / "cloud.db")
        await cloud.start()
        text = config_text(tmp_path, url=cloud.url()).replace(
            "[control]\n", f'[control]\nstate_path = "{short / "commands.db"}"\n')
        path = tmp_path / "gateway.toml"
        path.write_text(text)
        from gateway.config import load

        config = load(path)
        gateway = Gateway(config, simulate=True)
        runner = asyncio.create_task(gateway.run())
        await asyncio.wait_for(gateway.ready.wait(), 10)
        loop = asyncio.get_running_loop()
        try:
            for _ in range(500):
                if socket_path(config).exists():
                    break
                await asyncio.sleep(0.01)
            message = await loop.run_in_executor(
                None, lambda: actuate_by_hand(config, "fan", "on", simulate=True))
            factory = gateway.hardware.pin_factory()
            assert factory.pin(FAN_PIN).state == 1.0
            health = await gateway.health()
            refused = await loop.run_in_executor(
                None, lambda: main(["actuate", "fan", "0.5", "--config", str(path),
                                    "--simulate"]))
            released = await loop.run_in_executor(
                None, lambda: actuate_by_hand(config, "fan", "auto"))
            after = factory.pin(FAN_PIN).state
        finally:
            gateway.stop()
            await runner
            await cloud.stop()
        assert message.startswith("fan = 1 (set by the running service; held 600 s")
        assert health["actuators"]["fan"] == {"state": 1.0, "source": "manual",
                                              "last_command": "manual: 1"}
        assert health["actuators"]["street_light"]["source"] in ("fail_safe", "rule")
        assert 'alatau_actuator_value{actuator="fan",source="manual"} 1' in \
            metrics_text(health)
        assert "actuator: fan = 1.0 (by manual), last command manual: 1" in \
            render_status(health)
        assert refused == 2
        assert released == "fan: back to automatic control, now 0 (fail_safe)"
        assert after == 0.0
        assert not socket_path(config).exists()

    asyncio.run(go())
