"""Local rules: hysteresis, hold times, minimum on/off times, fresh readings only.

Time is injected (monotonic seconds); nothing here sleeps.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, RuleConfig, parse
from gateway.control.rules import Rule
from tests.control_fixtures import LIGHT_PIN, config_text, make_rig, signed

DUSK = RuleConfig(name="dusk", sensor="lux", quantity="illuminance_lux", actuator="light",
                  on_below=20.0, off_above=40.0, for_s=60.0)
FAN = RuleConfig(name="cool", sensor="air", quantity="temperature_celsius", actuator="fan",
                 on_above=30.0, off_below=25.0, for_s=0.0, on_value=1.0, off_value=0.0)


def feed(rule: Rule, values: list[float], start: float = 0.0, step: float = 10.0) -> float:
    t = start
    for value in values:
        rule.observe(value, t)
        t += step
    return t - step


# --- the pure rule ------------------------------------------------------------------------
def test_a_rule_is_undecided_until_a_condition_has_held_for_its_time():
    rule = Rule(DUSK)
    feed(rule, [5.0] * 6)  # t = 0..50: dark, but only for 50 s
    assert rule.target() is None
    rule.observe(5.0, 60.0)
    assert rule.target() == 1.0


def test_values_inside_the_band_keep_the_last_decision():
    rule = Rule(DUSK)
    t = feed(rule, [5.0] * 7)
    assert rule.target() == 1.0
    feed(rule, [25.0, 39.9, 20.0, 30.0] * 10, start=t + 10)
    assert rule.target() == 1.0
    t = feed(rule, [41.0] * 7, start=1000.0)
    assert rule.target() == 0.0
    feed(rule, [20.0, 39.0, 25.0] * 10, start=t + 10)
    assert rule.target() == 0.0


def test_a_short_dip_does_not_switch_and_the_run_restarts_after_it():
    rule = Rule(DUSK)
    feed(rule, [100.0] * 7)
    assert rule.target() == 0.0
    # Dark for 50 s, a bright reading, then dark again: the 60 s count starts over.
    feed(rule, [5.0] * 6 + [30.0] + [5.0] * 6, start=100.0)
    assert rule.target() == 0.0
    rule.observe(5.0, 100.0 + 13 * 10)
    assert rule.target() == 1.0


def test_the_hold_time_can_elapse_between_readings():
    rule = Rule(DUSK)
    rule.observe(5.0, 0.0)
    rule.advance(59.9)
    assert rule.target() is None
    rule.advance(60.0)
    assert rule.target() == 1.0


def test_a_rising_rule_turns_on_above_and_off_below():
    rule = Rule(FAN)
    rule.observe(31.0, 0.0)
    assert rule.target() == 1.0
    rule.observe(27.0, 10.0)
    assert rule.target() == 1.0
    rule.observe(24.9, 20.0)
    assert rule.target() == 0.0


def test_losing_the_sensor_forgets_the_decision_and_the_running_condition():
    rule = Rule(DUSK)
    feed(rule, [5.0] * 7)
    rule.lose()
    assert rule.target() is None
    rule.observe(5.0, 1000.0)
    assert rule.target() is None


# --- rules driving a real (mock) pin ------------------------------------------------------
def test_the_street_light_follows_daylight_with_minimum_times(tmp_path: Path):
    rig = make_rig(tmp_path)
    assert rig.pin(LIGHT_PIN) == 1.0  # fail-safe: lights on
    for _ in range(7):  # bright day for 60 s, but min_on (300 s) counts from start
        rig.light_reading(5000.0)
        rig.tick(10.0)
    assert rig.pin(LIGHT_PIN) == 1.0
    assert rig.telemetry.actuators["street_light"].source == "fail_safe"
    while rig.clock.mono - rig.controller.started_mono < 300.0:
        rig.light_reading(5000.0)
        rig.tick(10.0)
    rig.tick()
    assert rig.pin(LIGHT_PIN) == 0.0
    assert rig.telemetry.actuators["street_light"].source == "rule"
    switched_off = rig.clock.mono

    # Dusk comes quickly: dark for 60 s, but min_off (300 s) keeps it off until then.
    for _ in range(10):
        rig.light_reading(3.0)
        rig.tick(10.0)
    assert rig.pin(LIGHT_PIN) == 0.0
    while rig.clock.mono - switched_off < 300.0:
        rig.light_reading(3.0)
        rig.tick(10.0)
    rig.tick()
    assert rig.pin(LIGHT_PIN) == 1.0
    assert rig.telemetry.actuators["street_light"].source == "rule"
    # Exactly one off and one on after the fail-safe start: no chatter.
    assert rig.history(LIGHT_PIN)[-3:] == [1.0, 0.0, 1.0]


def test_a_light_level_in_the_band_leaves_the_light_where_it_is(tmp_path: Path):
    rig = make_rig(tmp_path)
    started = rig.history(LIGHT_PIN)
    for _ in range(100):
        rig.light_reading(30.0)
        rig.tick(10.0)
    assert rig.pin(LIGHT_PIN) == 1.0
    assert rig.history(LIGHT_PIN) == started


def day_then_off(rig) -> None:
    for _ in range(40):
        rig.light_reading(5000.0)
        rig.tick(10.0)
    assert rig.pin(LIGHT_PIN) == 0.0


def test_a_stale_sensor_sends_the_light_to_fail_safe(tmp_path: Path):
    rig = make_rig(tmp_path)
    day_then_off(rig)
    # The sensor goes quiet: stale after max(3 x 10 s, 10 s + 30 s) = 40 s; the last
    # reading was 10 s ago.
    rig.tick(29.0)
    assert rig.pin(LIGHT_PIN) == 0.0
    rig.tick(2.0)
    assert rig.pin(LIGHT_PIN) == 1.0
    assert rig.telemetry.actuators["street_light"].source == "fail_safe"


def test_a_failing_sensor_sends_the_light_to_fail_safe_at_once(tmp_path: Path):
    rig = make_rig(tmp_path)
    day_then_off(rig)
    rig.telemetry.sensor("street_light_level").state = "failing"
    rig.tick(1.0)
    assert rig.pin(LIGHT_PIN) == 1.0
    assert rig.telemetry.actuators["street_light"].source == "fail_safe"


def test_after_the_sensor_returns_the_rule_needs_its_full_hold_time_again(tmp_path: Path):
    rig = make_rig(tmp_path)
    day_then_off(rig)
    rig.telemetry.sensor("street_light_level").state = "failing"
    rig.tick(1.0)
    assert rig.pin(LIGHT_PIN) == 1.0
    lost_at = rig.clock.mono
    # Back with a bright value: never follows the old decision, waits for 60 s of day
    # and for min_on since the fail-safe switch-on.
    while rig.clock.mono - lost_at < 290.0:
        rig.light_reading(5000.0)
        rig.tick(10.0)
        assert rig.pin(LIGHT_PIN) == 1.0
    for _ in range(2):
        rig.light_reading(5000.0)
        rig.tick(10.0)
    assert rig.pin(LIGHT_PIN) == 0.0


def test_no_reading_at_all_after_start_keeps_fail_safe(tmp_path: Path):
    rig = make_rig(tmp_path)
    started = rig.history(LIGHT_PIN)
    for _ in range(100):
        rig.tick(10.0)
    assert rig.pin(LIGHT_PIN) == 1.0
    assert rig.history(LIGHT_PIN) == started


def test_a_reading_without_the_rules_quantity_is_not_fresh(tmp_path: Path):
    rig = make_rig(tmp_path)
    day_then_off(rig)
    for _ in range(5):
        rig.controller.on_reading("street_light_level", {"other_quantity": 1.0},
                                  rig.clock.mono)
        rig.tick(10.0)
    assert rig.pin(LIGHT_PIN) == 1.0


def test_a_cloud_command_overrides_the_rule_for_the_hold_then_the_rule_resumes(tmp_path):
    rig = make_rig(tmp_path)
    day_then_off(rig)
    results = rig.reply(signed("c-1", "street_light", 1.0,
                               not_after=rig.clock.wall + 60_000))
    assert results[0]["status"] == "done"
    assert rig.pin(LIGHT_PIN) == 1.0
    for _ in range(59):  # command_hold is 600 s; the rule still wants it off
        rig.light_reading(5000.0)
        rig.tick(10.0)
    assert rig.pin(LIGHT_PIN) == 1.0
    assert rig.telemetry.actuators["street_light"].source == "command"
    for _ in range(2):
        rig.light_reading(5000.0)
        rig.tick(10.0)
    assert rig.pin(LIGHT_PIN) == 0.0
    assert rig.telemetry.actuators["street_light"].source == "rule"


# --- rule configuration -------------------------------------------------------------------
def test_two_rules_on_one_actuator_are_a_config_error(tmp_path: Path):
    extra = """
[[rules]]
name = "second"
sensor = "street_light_level"
quantity = "illuminance_lux"
actuator = "street_light"
on_below = 10.0
off_above = 50.0
"""
    with pytest.raises(ConfigError) as info:
        parse(config_text(tmp_path, rule=extra))
    assert "'street_light' is already driven by rule 'lights_at_dusk'" in str(info.value)


def test_rule_values_outside_the_actuators_bounds_are_a_config_error(tmp_path: Path):
    extra = """
[[rules]]
name = "dim_at_night"
sensor = "street_light_level"
quantity = "illuminance_lux"
actuator = "lamp_dimmer"
on_below = 10.0
off_above = 50.0
on_value = 0.95
off_value = 0.2
"""
    with pytest.raises(ConfigError) as info:
        parse(config_text(tmp_path, rule=extra))
    message = str(info.value)
    assert "rules[1].on_value: 0.95 is outside the bounds of actuator 'lamp_dimmer' " \
           "(0.2..0.9)" in message
