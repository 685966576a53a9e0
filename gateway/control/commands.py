"""Signed cloud commands: from a reply's ``commands`` list to a verdict for each.

Pure checks in a fixed order; the first that fails names the reason. Nothing here
touches an output: the controller acts on a ``Verdict`` whose status is ``done``.
See docs/protocol.md, "Commands and command results".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.config import ActuatorConfig
from gateway.control.ledger import Ledger
from gateway.control.signing import (
    ACTUATOR_RE,
    COMMAND_ID_RE,
    canonical_bytes,
    verify,
)

MAX_COMMANDS_PER_REPLY = 64
FIELDS = ("id", "actuator", "value", "not_after", "signature")

DONE = "done"
REFUSED = "refused"
FAILED = "failed"

BAD_SIGNATURE = "bad_signature"
REPLAYED = "replayed"
EXPIRED = "expired"
UNKNOWN_ACTUATOR = "unknown_actuator"
OUT_OF_BOUNDS = "out_of_bounds"
MALFORMED = "malformed"
ACTUATOR_ERROR = "actuator_error"


@dataclass(frozen=True)
class Command:
    id: str
    actuator: str
    value: float
    not_after_ms: int
    signature: str


@dataclass(frozen=True)
class Verdict:
    id: str | None
    status: str
    reason: str | None = None
    command: Command | None = None
    detail: str = ""
    """For the log: what exactly was wrong (never sent to the cloud)."""


def parse_command(item: Any) -> Command | Verdict:
    """A well-formed ``Command``, or a ``malformed`` verdict naming what is wrong."""
    if not isinstance(item, dict):
        return Verdict(None, REFUSED, MALFORMED, detail="a command must be a JSON object")
    raw_id = item.get("id")
    command_id = raw_id if isinstance(raw_id, str) and COMMAND_ID_RE.match(raw_id) else None

    def malformed(detail: str) -> Verdict:
        return Verdict(command_id, REFUSED, MALFORMED, detail=detail)

    if command_id is None:
        return malformed(f"id must be 1-128 characters of {COMMAND_ID_RE.pattern[2:-2]}")
    unknown = sorted(set(item) - set(FIELDS))
    if unknown:
        return malformed(f"unknown field(s) {', '.join(unknown)}")
    actuator = item.get("actuator")
    if not isinstance(actuator, str) or not ACTUATOR_RE.match(actuator):
        return malformed("actuator must be a snake_case name")
    value = item.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value):
        return malformed("value must be a finite number")
    not_after = item.get("not_after")
    if isinstance(not_after, bool) or not isinstance(not_after, int) or not_after < 0:
        return malformed("not_after must be integer Unix milliseconds")
    signature = item.get("signature")
    if not isinstance(signature, str) or not signature:
        return malformed("signature must be a base64 string")
    return Command(command_id, actuator, float(value), not_after, signature)


def within_bounds(actuator: ActuatorConfig, value: float) -> bool:
    if actuator.driver == "relay" and value not in (0.0, 1.0):
        return False
    return actuator.min <= value <= actuator.max


class CommandChecker:
    """Decides each command: signature, then replay, expiry, actuator and bounds."""

    def __init__(self, gateway_id: str, public_key: Ed25519PublicKey | None, ledger: Ledger,
                 actuators: dict[str, ActuatorConfig], now_ms: Callable[[], int]) -> None:
        self.gateway_id = gateway_id
        self.public_key = public_key
        self.ledger = ledger
        self.actuators = actuators
        self.now_ms = now_ms

    def check_reply(self, commands: Any) -> list[Verdict]:
        if not isinstance(commands, list):
            return [Verdict(None, REFUSED, MALFORMED, detail="commands must be a JSON array")]
        verdicts = [self.check(item) for item in commands[:MAX_COMMANDS_PER_REPLY]]
        if len(commands) > MAX_COMMANDS_PER_REPLY:
            verdicts.extend(
                Verdict(parse_command(item).id, REFUSED, MALFORMED,
                        detail=f"more than {MAX_COMMANDS_PER_REPLY} commands in one reply")
                for item in commands[MAX_COMMANDS_PER_REPLY:])
        return verdicts

    def check(self, item: Any) -> Verdict:
        parsed = parse_command(item)
        if isinstance(parsed, Verdict):
            return parsed
        command = parsed

        def refuse(reason: str, detail: str) -> Verdict:
            return Verdict(command.id, REFUSED, reason, command, detail)

        # The signature comes first: an unsigned command must not even burn its id.
        if self.public_key is None:
            return refuse(BAD_SIGNATURE, "no [control] public key configured")
        message = canonical_bytes(self.gateway_id, command.id, command.actuator,
                                  command.value, command.not_after_ms)
        if not verify(self.public_key, message, command.signature):
            return refuse(BAD_SIGNATURE, "signature does not verify against [control] "
                                         "public key for this gateway")
        now = self.now_ms()
        if not self.ledger.remember(command.id, command.not_after_ms, now):
            return refuse(REPLAYED, "this id was seen before")
        if command.not_after_ms < now:
            return refuse(EXPIRED, f"not_after {command.not_after_ms} is "
                                   f"{(now - command.not_after_ms) / 1000:.1f} s in the past")
        actuator = self.actuators.get(command.actuator)
        if actuator is None:
            known = ", ".join(self.actuators) or "none"
            return refuse(UNKNOWN_ACTUATOR, f"no actuator {command.actuator!r} "
                                            f"(known: {known})")
        if not within_bounds(actuator, command.value):
            allowed = "0 or 1" if actuator.driver == "relay" else \
                f"{actuator.min:g}..{actuator.max:g}"
            return refuse(OUT_OF_BOUNDS, f"{command.value:g} is outside {allowed}")
        return Verdict(command.id, DONE, None, command)
