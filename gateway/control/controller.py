"""The controller: outputs in their fail-safe state until a rule, a signed cloud command
or a technician says otherwise.

Who drives an actuator, strongest first:

1. an override: a cloud command or a manual ``actuate``, for ``[control] command_hold``
   seconds (a cloud command's override ends early when the cloud becomes unreachable);
2. its rule, from fresh readings only; a failing or stale sensor means fail-safe;
3. nothing: the output keeps its value, except that it returns to fail-safe while the
   cloud is unreachable (there is no one left to supervise it).

Every method runs on the service's event loop; the monotonic clock and the wall clock
are injected so tests can drive hours of rule timing and command expiry without sleeping.
See docs/control.md.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.config import Config, ControlConfig
from gateway.control import commands as cmd
from gateway.control.ledger import Ledger
from gateway.control.outputs import ActuatorFault, Output, open_driver
from gateway.control.rules import Rule
from gateway.control.signing import KeyFormatError, public_key_from_text, read_key_file
from gateway.poller import stale_after
from gateway.telemetry import Telemetry

log = logging.getLogger(__name__)

MAX_RESULTS_PER_BATCH = 200
CLOCK_FLOOR_EVERY_S = 3600.0
SOURCE_RULE, SOURCE_COMMAND, SOURCE_MANUAL, SOURCE_FAIL_SAFE = (
    "rule", "command", "manual", "fail_safe")


def state_path(config: Config) -> Path:
    """``[control] state_path``, or ``commands.db`` next to the buffer."""
    if config.control.state_path:
        return Path(config.control.state_path)
    return Path(config.storage.path).parent / "commands.db"


def socket_path(config: Config) -> Path:
    """Where the running service listens for ``actuate``: next to the control state."""
    return state_path(config).parent / "control.sock"


def load_public_key(control: ControlConfig) -> Ed25519PublicKey | None:
    """The command-signing public key, or None if none is configured."""
    if control.public_key:
        return public_key_from_text(control.public_key, "[control] public_key")
    if control.public_key_file:
        text = read_key_file(control.public_key_file, "[control] public_key_file")
        return public_key_from_text(text, f"[control] public_key_file {control.public_key_file}")
    return None


@dataclass
class Override:
    value: float
    source: str
    until_mono: float


class Controller:
    def __init__(
        self,
        config: Config,
        telemetry: Telemetry,
        pin_factory: Any,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        serve_manual: bool = True,
    ) -> None:
        self.config = config
        self.telemetry = telemetry
        self.pin_factory = pin_factory
        self.monotonic = monotonic
        self.wall_ms = wall_ms
        self.serve_manual = serve_manual
        self.actuators = {a.name: a for a in config.actuators}
        self.rules = {r.actuator: Rule(r) for r in config.rules}
        self.sensors = {s.name: s for s in config.sensors}
        self.outputs: dict[str, Output] = {}
        self.overrides: dict[str, Override] = {}
        self.unreachable = False
        self.ledger: Ledger | None = None
        self.checker: cmd.CommandChecker | None = None
        self.started_mono = monotonic()
        self._in_flight: list[int] = []
        self._floor_raised_mono: float | None = None
        self._manual_server: Any = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Fail-safe every output, open the command ledger, listen for ``actuate``."""
        now = self.monotonic()
        self.started_mono = now
        for actuator in self.config.actuators:
            state = self.telemetry.actuator(actuator.name)
            state.source = SOURCE_FAIL_SAFE
            try:
                driver = open_driver(actuator, self.pin_factory, actuator.fail_safe)
            except ActuatorFault as exc:
                # The sensors and the buffer matter more than one broken output: keep
                # running, and show the actuator as unavailable in /healthz.
                log.error("%s; it stays undriven", exc)
                state.value = None
                state.last_command = f"unavailable: {exc}"
                continue
            self.outputs[actuator.name] = Output(actuator, driver, actuator.fail_safe, now)
            state.value = actuator.fail_safe
            state.changed_mono = now
        self.ledger = Ledger(state_path(self.config))
        self._raise_clock_floor(now)
        pruned = self.ledger.prune()
        if pruned:
            log.info("forgot %d command ids that expired long ago", pruned)
        try:
            public_key = load_public_key(self.config.control)
        except KeyFormatError as exc:
            log.error("%s: every cloud command will be refused (bad_signature)", exc)
            public_key = None
        else:
            if public_key is None:
                log.info("no [control] public key: every cloud command will be refused")
        self.checker = cmd.CommandChecker(self.config.gateway_id, public_key, self.ledger,
                                          self.actuators, self.now_ms)
        if self.serve_manual:
            self._start_manual_server()
        log.info("control: %d actuators at fail-safe, %d rules", len(self.outputs),
                 len(self.rules))

    def stop(self) -> None:
        """Clean stop: every output back to fail-safe, then released."""
        now = self.monotonic()
        if self._manual_server is not None:
            self._manual_server.close()
            self._manual_server = None
        self.overrides.clear()
        for output in self.outputs.values():
            self._fail_safe(output, now, "stopping")
            output.close()
        self.outputs.clear()
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None

    def _start_manual_server(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # not inside the service (a test driving the controller directly)
        from gateway.control.manual import ManualServer

        self._manual_server = ManualServer(self, socket_path(self.config))
        self._manual_server.start()

    # --- time ----------------------------------------------------------------------------

    def now_ms(self) -> int:
        """Wall-clock Unix ms for expiry: never earlier than a time known to have passed.

        A Pi has no RTC and can boot with a clock from the past; the floor (the last
        wall time seen while the clock was synchronised, kept on disk) stops an expired
        command from looking fresh to such a clock.
        """
        floor = self.ledger.clock_floor_ms() if self.ledger is not None else 0
        return max(self.wall_ms(), floor)

    def _raise_clock_floor(self, now: float) -> None:
        if self.ledger is None or not self.telemetry.clock_synchronized:
            return
        if self._floor_raised_mono is not None and \
                now - self._floor_raised_mono < CLOCK_FLOOR_EVERY_S:
            return
        self._floor_raised_mono = now
        try:
            self.ledger.raise_clock_floor(self.wall_ms())
        except sqlite3.Error as exc:  # a full disk must not stop the housekeeping loop
            log.error("control state %s: cannot record the clock floor: %s",
                      self.ledger.path, exc)

    # --- readings and time passing -----------------------------------------------------------

    def on_reading(self, sensor: str, values: dict[str, float], mono: float) -> None:
        for rule in self.rules.values():
            if rule.config.sensor == sensor and rule.config.quantity in values:
                rule.observe(values[rule.config.quantity], mono)
                self._settle(rule.config.actuator, mono)

    def tick(self, now_mono: float) -> None:
        self._check_uplink(now_mono)
        self._raise_clock_floor(now_mono)
        for name in self.outputs:
            self._settle(name, now_mono)

    def _sensor_lost(self, rule: Rule, now: float) -> str | None:
        """Why the rule's sensor cannot be trusted now, or None if it is fresh."""
        name = rule.config.sensor
        state = self.telemetry.sensors.get(name)
        if state is not None and state.state == "failing":
            return f"sensor {name} is failing"
        last = rule.state.last_reading_mono
        limit = stale_after(self.sensors[name], self.config.health.stale_after)
        if last is None:
            if now - self.started_mono >= limit:
                return f"no fresh reading from sensor {name}"
            return None
        if now - last > limit:
            return f"sensor {name} is stale (last reading {now - last:.0f} s ago)"
        return None

    def _check_uplink(self, now: float) -> None:
        """Unreachable: attempts have been failing and nothing was stored for a while.

        An idle uploader (nothing to send) is not unreachable: only an attempt made
        after the last success, with that success (or the start) older than
        ``unreachable_fail_safe_after``, counts.
        """
        up = self.telemetry.uplink
        last_ok = up.last_success_mono
        since = last_ok if last_ok is not None else self.started_mono
        trying = up.last_attempt_mono is not None and (
            last_ok is None or up.last_attempt_mono > last_ok)
        after = self.config.control.unreachable_fail_safe_after
        unreachable = trying and now - since >= after
        if unreachable == self.unreachable:
            return
        self.unreachable = unreachable
        if not unreachable:
            log.info("cloud reachable again: cloud commands accepted")
            return
        log.warning("no batch stored for %.0f s (%s): cloud commands lifted, actuators "
                    "without a rule go to fail-safe", now - since, up.last_error or up.state)
        for name, override in list(self.overrides.items()):
            if override.source == SOURCE_COMMAND:
                del self.overrides[name]

    def _settle(self, name: str, now: float) -> None:
        """Put one output where whoever is in charge of it wants it."""
        output = self.outputs.get(name)
        if output is None:
            return
        override = self.overrides.get(name)
        if override is not None and now >= override.until_mono:
            log.info("actuator %s: %s hold over", name, override.source)
            del self.overrides[name]
            override = None
        if override is not None:
            return
        rule = self.rules.get(name)
        if rule is None:
            if self.unreachable:
                self._fail_safe(output, now, "cloud unreachable")
            return
        lost = self._sensor_lost(rule, now)
        if lost is not None:
            if rule.state.last_reading_mono is not None or \
                    self.telemetry.actuator(name).source != SOURCE_FAIL_SAFE:
                log.warning("rule %s: %s: actuator %s to fail-safe", rule.name, lost, name)
            rule.lose()
            self._fail_safe(output, now, lost)
            return
        rule.advance(now)
        target = rule.target()
        if target is None:
            return
        if target != output.value:
            on = output.value == rule.config.on_value
            dwell = rule.config.min_on_s if on else rule.config.min_off_s
            if now - output.changed_mono < dwell:
                return  # protects the contactor; the next tick retries
            log.info("rule %s: %s = %g -> %s = %g", rule.name, rule.config.quantity,
                     rule.state.last_value or 0.0, name, target)
        self._try_drive(output, target, SOURCE_RULE, now)

    def _fail_safe(self, output: Output, now: float, why: str) -> None:
        if output.value != output.config.fail_safe:
            log.info("actuator %s -> fail-safe %g (%s)", output.name, output.config.fail_safe,
                     why)
        self._try_drive(output, output.config.fail_safe, SOURCE_FAIL_SAFE, now)

    def _try_drive(self, output: Output, value: float, source: str, now: float) -> None:
        """Drive for a rule or fail-safe: a GPIO fault is logged once, then retried on
        every tick, and never stops the loop that asked."""
        try:
            self._drive(output, value, source, now)
        except ActuatorFault as exc:
            if output.fault != str(exc):
                log.error("%s", exc)
            output.fault = str(exc)
        else:
            output.fault = None

    def _drive(self, output: Output, value: float, source: str, now: float) -> None:
        changed = output.set(value, now)
        state = self.telemetry.actuator(output.name)
        state.value = output.value
        state.source = source
        if changed:
            state.changed_mono = now

    # --- cloud commands -----------------------------------------------------------------

    def on_reply(self, body: dict[str, Any]) -> None:
        """A 2xx reply: it acknowledges the results sent with it, and may carry commands."""
        if self.ledger is None or self.checker is None:
            return
        try:
            self._on_reply(body)
        except sqlite3.Error as exc:
            # Ids are written before outputs move, so nothing unrecorded has run; with no
            # result sent, the cloud offers the commands again.
            log.error("control state %s: %s; commands in this reply not run",
                      self.ledger.path, exc)

    def _on_reply(self, body: dict[str, Any]) -> None:
        assert self.ledger is not None and self.checker is not None
        if self._in_flight:
            self.ledger.drop_results(self._in_flight)
            self._in_flight = []
        if "commands" not in body:
            return
        now = self.monotonic()
        self._raise_clock_floor(now)
        for verdict in self.checker.check_reply(body["commands"]):
            if verdict.status == cmd.DONE:
                verdict = self._execute(verdict, now)
            self._record(verdict)

    def _execute(self, verdict: cmd.Verdict, now: float) -> cmd.Verdict:
        command = verdict.command
        assert command is not None
        output = self.outputs.get(command.actuator)
        try:
            if output is None:
                raise ActuatorFault(f"actuator {command.actuator} is unavailable")
            self._drive(output, command.value, SOURCE_COMMAND, now)
        except ActuatorFault as exc:
            return cmd.Verdict(command.id, cmd.FAILED, cmd.ACTUATOR_ERROR, command, str(exc))
        self.overrides[command.actuator] = Override(
            command.value, SOURCE_COMMAND, now + self.config.control.command_hold)
        return verdict

    def _record(self, verdict: cmd.Verdict) -> None:
        assert self.ledger is not None
        result = {"id": verdict.id, "status": verdict.status, "reason": verdict.reason,
                  "at": self.wall_ms()}
        self.ledger.add_result(result)
        command = verdict.command
        what = f"{command.actuator} = {command.value:g}" if command else "command"
        if verdict.status == cmd.DONE:
            log.info("cloud command %s: %s done", verdict.id, what)
        else:
            log.warning("cloud command %s: %s %s (%s)%s", verdict.id, what, verdict.status,
                        verdict.reason, f": {verdict.detail}" if verdict.detail else "")
        if command is not None and command.actuator in self.actuators:
            outcome = verdict.status if verdict.reason is None else \
                f"{verdict.status} ({verdict.reason})"
            self.telemetry.actuator(command.actuator).last_command = \
                f"{command.id}: {command.value:g} {outcome}"

    def extra_fields(self) -> dict[str, Any]:
        """Results not yet acknowledged ride on every batch until a reply confirms them."""
        if self.ledger is None:
            return {}
        try:
            pending = self.ledger.pending_results(MAX_RESULTS_PER_BATCH)
        except sqlite3.Error as exc:
            log.error("control state %s: cannot read command results: %s",
                      self.ledger.path, exc)
            self._in_flight = []
            return {}
        self._in_flight = [n for n, _ in pending]
        if not pending:
            return {}
        return {"command_results": [result for _, result in pending]}

    # --- by hand -----------------------------------------------------------------------

    def manual(self, name: str, value: float | None) -> str:
        """A technician's value (held like a command), or None to hand back control."""
        actuator = self.actuators.get(name)
        if actuator is None:
            known = ", ".join(self.actuators) or "none configured"
            raise KeyError(f"no actuator named {name!r} (known: {known})")
        output = self.outputs.get(name)
        if output is None:
            raise ValueError(f"actuator {name} is unavailable: "
                             f"{self.telemetry.actuator(name).last_command}")
        now = self.monotonic()
        if value is None:
            self.overrides.pop(name, None)
            if name in self.rules:
                self._settle(name, now)
            else:
                self._fail_safe(output, now, "released by hand; no rule drives it")
            state = self.telemetry.actuator(name)
            return f"{name}: back to automatic control, now {state.value:g} ({state.source})"
        if not cmd.within_bounds(actuator, value):
            raise ValueError(out_of_bounds_message(actuator.name, actuator.driver,
                                                   actuator.min, actuator.max, value))
        try:
            self._drive(output, value, SOURCE_MANUAL, now)
        except ActuatorFault as exc:
            raise ValueError(str(exc)) from None
        hold = self.config.control.command_hold
        self.overrides[name] = Override(value, SOURCE_MANUAL, now + hold)
        self.telemetry.actuator(name).last_command = f"manual: {value:g}"
        log.info("actuator %s = %g by hand, held %g s", name, value, hold)
        return (f"{name} = {value:g} (set by the running service; held {hold:g} s, "
                f"'auto' hands it back)")


def out_of_bounds_message(name: str, driver: str, low: float, high: float, value: float) -> str:
    allowed = "0/off or 1/on" if driver == "relay" else f"{low:g}..{high:g}"
    return f"{value:g} is out of bounds for actuator {name} (allowed: {allowed})"
