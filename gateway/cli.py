"""``alatau-gateway``: the service and the technician's tools.

Bad input of any kind ends with one line on stderr naming what and where, and exit 2;
a runtime failure exits 1. No tracebacks for users.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sqlite3
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import NoReturn

from gateway import config as config_mod

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
PROG = "alatau-gateway"


class UsageError(Exception):
    """Bad input: exit 2."""


class Failure(Exception):
    """The command could not do its job: exit 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def setup_logging(verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    if os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"):
        fmt = "%(levelname)s %(name)s: %(message)s"  # journald adds time and unit
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def load_config(path: str) -> config_mod.Config:
    try:
        return config_mod.load(path)
    except config_mod.ConfigError as exc:
        raise UsageError(str(exc)) from None


# --- commands ------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.service import Gateway
    from gateway.store import StoreError
    from gateway.uplink import UplinkSetupError

    cfg = load_config(args.config)
    setup_logging(args.verbose)
    try:
        gateway = Gateway(cfg, simulate=args.simulate)
        asyncio.run(gateway.run())
    except UplinkSetupError as exc:
        raise UsageError(str(exc)) from None
    except (OSError, StoreError) as exc:  # e.g. the buffer cannot be opened: disk full
        raise Failure(f"cannot start: {exc}") from None
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        cfg = config_mod.load(args.path)
    except config_mod.ConfigError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{args.path}: valid ({len(cfg.sensors)} sensors, {len(cfg.actuators)} actuators, "
          f"{len(cfg.rules)} rules)")
    return EXIT_OK


def cmd_read(args: argparse.Namespace) -> int:
    from drivers.errors import DriverError
    from gateway.hardware import Hardware, HardwareError

    cfg = load_config(args.config)
    try:
        sensor = cfg.sensor(args.sensor)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    hardware = Hardware(cfg, simulate=args.simulate)
    try:
        driver = hardware.make_sensor(sensor)
        started = time.monotonic()
        values = driver.read()
        elapsed = time.monotonic() - started
        close = getattr(driver, "close", None)
        if callable(close):
            close()
    except (DriverError, HardwareError, OSError) as exc:
        raise Failure(f"{sensor.name} ({sensor.driver}): {type(exc).__name__}: {exc}") from None
    finally:
        hardware.close()
    if args.json:
        print(json.dumps({"sensor": sensor.name, "driver": sensor.driver, "values": values}))
    else:
        print(f"{sensor.name} ({sensor.driver}, {elapsed * 1000:.0f} ms)")
        for name, value in values.items():
            print(f"  {name:<28} {value:.6g}")
    return EXIT_OK


def cmd_scan(args: argparse.Namespace) -> int:
    from gateway.scan import format_scan, scan_bus

    if args.simulate:
        if not args.config:
            raise UsageError("scan --simulate needs --config (the simulated chips come from it)")
        from gateway.hardware import Hardware
        cfg = load_config(args.config)
        hardware = Hardware(cfg, simulate=True)
        for sensor in cfg.sensors:
            if sensor.bus == args.bus:
                hardware.make_sensor(sensor)
        bus = hardware.i2c_bus(args.bus)
    else:
        from smbus2 import SMBus
        try:
            bus = SMBus(args.bus)
        except OSError as exc:
            raise Failure(f"cannot open /dev/i2c-{args.bus}: {exc.strerror}") from None
    found = scan_bus(bus)
    print(format_scan(args.bus, found))
    return EXIT_OK


def _health_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    listen = config_mod.DEFAULT_HEALTH_LISTEN
    path = args.config or config_mod.DEFAULT_CONFIG_PATH
    if args.config or os.path.exists(path):
        listen = load_config(path).health.listen
    host, _, port = listen.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def cmd_status(args: argparse.Namespace) -> int:
    from gateway.status_view import render_status

    url = _health_url(args) + "/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            health = json.load(resp)
    except urllib.error.HTTPError as exc:
        health = json.loads(exc.read() or b"{}")
        if not health:
            raise Failure(f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Failure(f"the service is not answering at {url} ({reason}); is it running? "
                      "(systemctl status alatau-gateway)") from None
    if args.json:
        print(json.dumps(health, indent=2))
    else:
        print(render_status(health))
    return EXIT_OK if health.get("status") == "ok" else EXIT_FAILURE


def cmd_buffer(args: argparse.Namespace) -> int:
    from gateway.store import StoreError, export_lines, read_only_stats

    cfg = load_config(args.config)
    path = cfg.storage.path
    try:
        if args.action == "export":
            out = sys.stdout.buffer
            count = 0
            for line in export_lines(path):
                out.write(line + b"\n")
                count += 1
            out.flush()
            print(f"{count} readings exported", file=sys.stderr)
            return EXIT_OK
        stats, letters = read_only_stats(path)
    except StoreError as exc:
        raise Failure(str(exc)) from None
    if args.action == "stats":
        data = {
            "path": path, "readings": stats.readings, "bytes": stats.bytes,
            "file_bytes": stats.file_bytes,
            "oldest_age_s": None if stats.oldest_ts is None
            else round(time.time() - stats.oldest_ts / 1000, 3),
            "next_seq": stats.next_seq, "acked_seq": stats.acked_seq,
            "pending_drops": stats.pending_drops, "dead_letters": stats.dead_letters,
            "dropped": stats.dropped_by_reason,
        }
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            for key, value in data.items():
                print(f"{key:<15} {value}")
        return EXIT_OK
    if args.json:
        print(json.dumps(letters, indent=2))
    elif not letters:
        print("no dead letters")
    else:
        for letter in letters:
            print(f"seq {letter['seq']}: HTTP {letter['status']}: {letter['reason']}")
            print(f"  {json.dumps(letter['reading'])}")
    return EXIT_OK


def cmd_actuate(args: argparse.Namespace) -> int:
    from gateway.control import actuate_by_hand

    cfg = load_config(args.config)
    try:
        message: str = actuate_by_hand(cfg, args.name, args.value, simulate=args.simulate)
    except (KeyError, ValueError) as exc:
        raise UsageError(str(exc.args[0]) if exc.args else str(exc)) from None
    print(message)
    return EXIT_OK


def cmd_cloud(args: argparse.Namespace) -> int:
    from gateway import cloud

    if args.action == "keygen":
        return _cloud_keygen(args)
    if not args.listen or not args.db:
        raise UsageError("--listen HOST:PORT and --db PATH are required "
                         "(or: cloud keygen --out DIR)")
    commands = None
    if args.signing_key:
        try:
            commands = cloud.CommandQueue.from_key_file(args.signing_key)
        except ValueError as exc:
            raise UsageError(f"--signing-key: {exc}") from None
    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen {args.listen!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    token = None
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            raise UsageError(f"--token-file {args.token_file}: {exc.strerror}") from None
    try:  # a --db that cannot be opened is not a listening problem: say which it is
        cloud.CloudStore(args.db).close()
    except (OSError, sqlite3.Error) as exc:
        raise UsageError(f"--db {args.db}: cannot open: {exc}") from None
    setup_logging(args.verbose)
    try:
        asyncio.run(cloud.serve(host.strip("[]"), int(port), args.db, token, commands))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise Failure(f"cannot listen on {args.listen}: {exc.strerror or exc}") from None
    return EXIT_OK


def _cloud_keygen(args: argparse.Namespace) -> int:
    from gateway.control import signing

    if not args.out:
        raise UsageError("keygen needs --out DIR (where signing.key and signing.pub go)")
    try:
        private_path, public_path = signing.generate_key_pair(args.out)
    except FileExistsError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise Failure(f"--out {args.out}: {exc.strerror or exc}") from None
    public = public_path.read_text(encoding="ascii").strip()
    print(f"signing key (keep secret): {private_path}\npublic key: {public_path}\n"
          f"gateways' config:  [control] public_key = \"{public}\"")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import parse_outage, run_demo

    try:
        outage = parse_outage(args.outage) if args.outage else None
    except ValueError as exc:
        raise UsageError(f"--outage {args.outage!r}: {exc}") from None
    if args.duration <= 0:
        raise UsageError("--duration must be greater than 0")
    if not args.json:
        setup_logging(args.verbose) if args.verbose else logging.basicConfig(
            level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    else:
        logging.basicConfig(level=logging.CRITICAL)
    summary = run_demo(args.duration, outage, live=not args.json, day_length_s=args.day_length)
    if args.json:
        print(json.dumps(summary))
    return EXIT_OK if summary["lost"] == 0 else EXIT_FAILURE


# --- parser --------------------------------------------------------------------------


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number greater than 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Alatau City field gateway.")
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def command(name: str, fn: Callable[[argparse.Namespace], int], help_text: str
                ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=fn)
        return p

    p = command("run", cmd_run, "run the service (systemd's ExecStart)")
    p.add_argument("--config", default=config_mod.DEFAULT_CONFIG_PATH, metavar="PATH")
    p.add_argument("--simulate", action="store_true",
                   help="swap every bus for its emulator (runs on a laptop)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    p = command("demo", cmd_demo, "the whole system on a laptop: emulated hardware, a local "
                                  "reference cloud, a live view")
    p.add_argument("--duration", type=positive_float, default=60.0, metavar="S")
    p.add_argument("--outage", metavar="START:END",
                   help="take the cloud down from START to END seconds into the demo")
    p.add_argument("--json", action="store_true", help="print only the JSON summary")
    p.add_argument("--day-length", type=positive_float, default=40.0, metavar="S",
                   help="seconds of demo time per simulated day (default 40)")
    p.add_argument("-v", "--verbose", action="store_true")

    p = command("check-config", cmd_check_config, "validate a configuration file")
    p.add_argument("path", metavar="PATH")

    p = command("read", cmd_read, "take one measurement from one sensor and print it")
    p.add_argument("sensor", metavar="SENSOR")
    p.add_argument("--config", default=config_mod.DEFAULT_CONFIG_PATH, metavar="PATH")
    p.add_argument("--simulate", action="store_true")
    p.add_argument("--json", action="store_true")

    p = command("scan", cmd_scan, "scan an I2C bus and name the chips found")
    p.add_argument("--bus", type=int, default=1, metavar="N", help="/dev/i2c-N (default 1)")
    p.add_argument("--config", metavar="PATH", help="with --simulate: the chips to emulate")
    p.add_argument("--simulate", action="store_true")

    p = command("status", cmd_status, "the running service's health")
    p.add_argument("--json", action="store_true")
    p.add_argument("--config", metavar="PATH", help="where [health] listen is configured")
    p.add_argument("--url", metavar="URL", help="health endpoint, e.g. http://127.0.0.1:9108")

    p = command("buffer", cmd_buffer, "inspect the local buffer")
    p.add_argument("action", choices=("stats", "export", "dead-letters"))
    p.add_argument("--config", default=config_mod.DEFAULT_CONFIG_PATH, metavar="PATH")
    p.add_argument("--json", action="store_true")

    p = command("actuate", cmd_actuate, "drive one actuator by hand")
    p.add_argument("name", metavar="NAME")
    p.add_argument("value", metavar="VALUE", help="on/off/1/0 for a relay, 0..1 for a dimmer")
    p.add_argument("--config", default=config_mod.DEFAULT_CONFIG_PATH, metavar="PATH")
    p.add_argument("--simulate", action="store_true")

    p = command("cloud", cmd_cloud, "the reference city-cloud receiver "
                                    "(`cloud keygen --out DIR`: a command-signing key pair)")
    p.add_argument("action", nargs="?", choices=("keygen",),
                   help="keygen: write signing.key and signing.pub into --out DIR")
    p.add_argument("--listen", metavar="HOST:PORT", help="required unless keygen")
    p.add_argument("--db", metavar="PATH", help="required unless keygen")
    p.add_argument("--token-file", metavar="PATH", help="require this bearer token")
    p.add_argument("--signing-key", metavar="FILE",
                   help="sign actuator commands queued at POST /_admin/commands")
    p.add_argument("--out", metavar="DIR", help="keygen: the directory for the key pair")
    p.add_argument("-v", "--verbose", action="store_true")
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("alatau-gateway")
    except Exception:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except UsageError as exc:
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Failure as exc:
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # A bug, not bad input: one line for the user, the traceback only when asked.
        if os.environ.get("ALATAU_GATEWAY_DEBUG") == "1" or getattr(args, "verbose", False):
            raise
        print(f"{PROG} {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(set ALATAU_GATEWAY_DEBUG=1 for details)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
