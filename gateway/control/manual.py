"""``alatau-gateway actuate``: a technician drives one actuator by hand.

While the service runs it owns the GPIO pins, so ``actuate`` asks it, over a Unix socket
next to the control state (``control.sock``; mode 0660, so only the service's user and
group, or root, may drive outputs; a loopback TCP port would let any local user). The
service holds the value like a cloud command, for ``[control] command_hold`` seconds or
until ``actuate NAME auto``. When no service answers, ``actuate`` drives the pin itself;
gpiozero resets pins when a process exits, so on a device it holds the value until
Ctrl-C and then returns the output to its fail-safe state. See docs/control.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.config import ActuatorConfig, Config
from gateway.control.commands import within_bounds
from gateway.control.outputs import ActuatorFault, open_driver

if TYPE_CHECKING:
    from gateway.control.controller import Controller

log = logging.getLogger(__name__)

MAX_SOCKET_PATH_BYTES = 107
"""sun_path holds 108 bytes on Linux, including the terminating NUL."""
MAX_REQUEST_BYTES = 4096
TIMEOUT_S = 5.0
ON_WORDS = ("on", "true", "yes")
OFF_WORDS = ("off", "false", "no")
AUTO = "auto"


class ManualServer:
    """The running service's end of ``actuate``: one JSON line in, one JSON line out."""

    def __init__(self, controller: Controller, path: Path) -> None:
        self.controller = controller
        self.path = path
        self._server: asyncio.AbstractServer | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if len(os.fsencode(self.path)) > MAX_SOCKET_PATH_BYTES:
            log.warning("control socket path %s is too long for a Unix socket; `actuate` "
                        "cannot reach this service", self.path)
            return
        if _answers(self.path):
            log.error("another service already listens on %s; `actuate` will reach that one",
                      self.path)
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left behind by a crash: nothing answers on it
        self._task = asyncio.get_running_loop().create_task(self._listen(), name="actuate")

    async def _listen(self) -> None:
        try:
            self._server = await asyncio.start_unix_server(
                self._handle, path=str(self.path), limit=MAX_REQUEST_BYTES)
            os.chmod(self.path, 0o660)
        except OSError as exc:
            log.error("cannot listen on %s for `actuate`: %s", self.path, exc)

    def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._server is not None:
            self._server.close()
            self._server = None
            with contextlib.suppress(OSError):
                self.path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), TIMEOUT_S)
            reply = self.answer(line)
        except (TimeoutError, ValueError) as exc:
            reply = {"ok": False, "error": f"bad request: {exc}"}
        writer.write(json.dumps(reply).encode() + b"\n")
        with contextlib.suppress(OSError):
            await writer.drain()
            writer.close()

    def answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            name, value = request["actuator"], request["value"]
            if not isinstance(name, str) or not (value is None or isinstance(value, float | int)):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": 'bad request: expected {"actuator": NAME, '
                                          '"value": NUMBER or null}'}
        try:
            message = self.controller.manual(name, None if value is None else float(value))
        except KeyError as exc:
            return {"ok": False, "error": str(exc.args[0])}
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "message": message}


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


# --- the command-line end -----------------------------------------------------------------


def parse_value(actuator: ActuatorConfig, text: str) -> float | None:
    """``on``/``off``/``auto`` or a number; None means ``auto``. Bounds are checked."""
    word = text.strip().lower()
    if word == AUTO:
        return None
    if word in ON_WORDS:
        value = 1.0 if actuator.driver == "relay" else actuator.max
    elif word in OFF_WORDS:
        value = 0.0
    else:
        try:
            value = float(word)
        except ValueError:
            raise ValueError(f"VALUE {text!r}: expected on, off, auto or a number") from None
    if not within_bounds(actuator, value):
        from gateway.control.controller import out_of_bounds_message

        raise ValueError(out_of_bounds_message(actuator.name, actuator.driver, actuator.min,
                                               actuator.max, value))
    return value


def actuate_by_hand(config: Config, name: str, value_text: str, *, simulate: bool = False,
                    hold: Callable[[], None] | None = None, pin_factory: Any = None) -> str:
    """Drive actuator ``name``: through the running service, else directly.

    ``hold`` waits while a direct value is held (default: until Ctrl-C on a device, not
    at all with ``simulate``); ``pin_factory`` replaces the one ``simulate`` would make.
    Raises KeyError or ValueError with a one-line message.
    """
    from gateway.control.controller import socket_path

    actuator = config.actuator(name)
    value = parse_value(actuator, value_text)
    path = socket_path(config)
    reply = _ask_service(path, name, value)
    if reply is not None:
        if not reply.get("ok"):
            raise ValueError(f"the running service refused: {reply.get('error')}")
        return str(reply.get("message"))
    if value is None:
        raise ValueError(f"'auto' hands an actuator back to the running service, but none "
                         f"answers at {path}")
    return _drive_directly(actuator, value, simulate, hold, pin_factory)


def _ask_service(path: Path, name: str, value: float | None) -> dict[str, Any] | None:
    """The service's reply, or None when no service is listening."""
    request = json.dumps({"actuator": name, "value": value}).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT_S)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        except OSError as exc:
            if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
                return None  # the service could not listen there either
            raise ValueError(f"cannot reach the running service at {path}: "
                             f"{exc.strerror or exc} (run as root or as the service's "
                             "user)") from None
        try:
            sock.sendall(request)
            data = b""
            while not data.endswith(b"\n") and len(data) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            raise ValueError(f"the running service at {path} did not answer: "
                             f"{exc.strerror or exc}") from None
    try:
        reply = json.loads(data)
    except ValueError:
        raise ValueError(f"the running service at {path} answered garbage") from None
    if not isinstance(reply, dict):
        raise ValueError(f"the running service at {path} answered garbage")
    return reply


def _drive_directly(actuator: ActuatorConfig, value: float, simulate: bool,
                    hold: Callable[[], None] | None, pin_factory: Any) -> str:
    own_factory = pin_factory is None and simulate
    if own_factory:
        from drivers.fake.gpio import mock_factory

        pin_factory = mock_factory()
    where = f"GPIO {actuator.pin}" + (" (simulated)" if simulate else "")
    try:
        driver = open_driver(actuator, pin_factory, actuator.fail_safe)
        try:
            _set(driver, actuator, value)
            if hold is None and not simulate:
                hold = _until_interrupted
                print(f"{actuator.name} = {value:g} on {where}; no service is running, so "
                      f"this command holds it: Ctrl-C releases it to fail-safe "
                      f"{actuator.fail_safe:g}", file=sys.stderr, flush=True)
            if hold is not None:
                hold()
                _set(driver, actuator, actuator.fail_safe)
                return f"{actuator.name} released: back to fail-safe {actuator.fail_safe:g}"
        finally:
            driver.close()
    except ActuatorFault as exc:
        raise ValueError(str(exc)) from None
    finally:
        if own_factory:
            pin_factory.close()
    return f"{actuator.name} = {value:g} on {where} (directly: no service is running)"


def _set(driver: Any, actuator: ActuatorConfig, value: float) -> None:
    try:
        driver.set(value)
    except Exception as exc:  # gpiozero's own errors: reported in one line
        raise ActuatorFault(f"actuator {actuator.name}: cannot set {value:g}: "
                            f"{type(exc).__name__}: {exc}") from None


def _until_interrupted() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
