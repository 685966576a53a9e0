"""Signed cloud commands: what runs, what is refused and why, and how results travel.

Every refusal is checked three ways: the reason reported, the result queued for the
cloud, and no pin having moved (MockFactory pin histories).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.cli import main
from gateway.cloud import CloudServer, CommandQueue
from gateway.config import UplinkConfig
from gateway.control import Controller
from gateway.control.commands import MAX_COMMANDS_PER_REPLY
from gateway.control.signing import (
    canonical_bytes,
    format_value,
    private_key_from_text,
    public_key_from_text,
    public_key_text,
    sign,
    verify,
)
from gateway.store import Reading, Store
from gateway.telemetry import Telemetry
from gateway.uplink import Uploader
from tests.control_fixtures import (
    DIMMER_PIN,
    FAN_PIN,
    GATEWAY,
    LIGHT_PIN,
    OTHER_KEY,
    SIGNING_KEY,
    WALL0_MS,
    Clock,
    forged_signature,
    make_config,
    make_rig,
    signed,
)
from tests.helpers import direct

PINS = (LIGHT_PIN, FAN_PIN, DIMMER_PIN)


def snapshot(rig) -> dict[int, list[float]]:
    return {pin: rig.history(pin) for pin in PINS}


def assert_nothing_moved(rig, before: dict[int, list[float]]) -> None:
    assert snapshot(rig) == before
    assert {a.source for a in rig.telemetry.actuators.values()} == {"fail_safe"}


# --- the canonical form -------------------------------------------------------------------
def test_the_canonical_bytes_are_exactly_as_documented():
    assert canonical_bytes("alatau-cab-0001", "cmd-42", "street_light", 1.0,
                           1764337060000) == (
        b'{"v":"alatau-command/1","gateway":"alatau-cab-0001","id":"cmd-42",'
        b'"actuator":"street_light","value":1,"not_after":1764337060000}')


@pytest.mark.parametrize(("command_id", "actuator", "value", "signature"), [
    ("cmd-42", "street_light", 1,
     "Hlu67NlbApoJ4kJHSnuqHGOa2dH7ABipJ245AueuHxJECIXmsIF8V1ovZPXfi+ecv+vN6r985JSMJ9tLcl6oAw=="),
    ("cmd-43", "lamp_dimmer", 0.35,
     "zVcN+IRaYOKq4zUu8e4dc9HWH5YUcZ5rtae9R8s7FqAoHU74YxRZaz5H6I19uIxkqFG+zStvj3+TBlUvIMo9DA=="),
])
def test_the_documented_test_vectors(command_id, actuator, value, signature):
    key = private_key_from_text("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
    assert public_key_text(key.public_key()) == "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
    message = canonical_bytes("alatau-cab-0001", command_id, actuator, value, 1764337060000)
    assert sign(key, message) == signature
    protocol = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()
    assert message.decode() in protocol and signature in protocol


@pytest.mark.parametrize(("value", "text"), [
    (1, "1"), (1.0, "1"), (0.0, "0"), (0.5, "0.5"), (0.35, "0.35"), (0.1, "0.1"),
    (1e-05, "0.00001"), (0.123456789, "0.123456789"),
])
def test_values_are_signed_as_plain_shortest_decimals(value, text):
    assert format_value(value) == text


def test_identifiers_outside_the_safe_alphabet_cannot_be_signed():
    with pytest.raises(ValueError, match="command id"):
        canonical_bytes(GATEWAY, 'a"b', "fan", 1.0, 0)


# --- what runs ----------------------------------------------------------------------------
def test_a_valid_command_actuates_and_reports_done(tmp_path: Path):
    rig = make_rig(tmp_path)
    assert rig.pin(FAN_PIN) == 0.0
    results = rig.reply(signed("c-1", "fan", 1))
    assert rig.pin(FAN_PIN) == 1.0
    assert results == [{"id": "c-1", "status": "done", "reason": None, "at": WALL0_MS}]
    fan = rig.telemetry.actuators["fan"]
    assert (fan.value, fan.source, fan.last_command) == (1.0, "command", "c-1: 1 done")


def test_a_dimmer_takes_a_duty_cycle_within_its_bounds(tmp_path: Path):
    rig = make_rig(tmp_path)
    results = rig.reply(signed("c-1", "lamp_dimmer", 0.35))
    assert results[0]["status"] == "done"
    assert rig.pin(DIMMER_PIN) == pytest.approx(0.35)


# --- what is refused ----------------------------------------------------------------------
def _forged(now: int) -> dict[str, Any]:
    return {**signed("c-1", "fan", 1), "signature": forged_signature()}


def _tampered(now: int) -> dict[str, Any]:
    return {**signed("c-1", "fan", 0), "value": 1}


def _wrong_key(now: int) -> dict[str, Any]:
    return signed("c-1", "fan", 1, key=OTHER_KEY)


def _other_gateway(now: int) -> dict[str, Any]:
    return signed("c-1", "fan", 1, gateway="alatau-cab-0999")


def _not_base64(now: int) -> dict[str, Any]:
    return {**signed("c-1", "fan", 1), "signature": "not base64!"}


def _expired(now: int) -> dict[str, Any]:
    return signed("c-1", "fan", 1, not_after=now - 1)


def _unknown(now: int) -> dict[str, Any]:
    return signed("c-1", "pump", 1)


def _relay_half(now: int) -> dict[str, Any]:
    return signed("c-1", "fan", 0.5)


def _dimmer_over(now: int) -> dict[str, Any]:
    return signed("c-1", "lamp_dimmer", 0.95)


def _dimmer_under(now: int) -> dict[str, Any]:
    return signed("c-1", "lamp_dimmer", 0.1)


@pytest.mark.parametrize(("make", "reason"), [
    (_forged, "bad_signature"),
    (_tampered, "bad_signature"),
    (_wrong_key, "bad_signature"),
    (_other_gateway, "bad_signature"),
    (_not_base64, "bad_signature"),
    (_expired, "expired"),
    (_unknown, "unknown_actuator"),
    (_relay_half, "out_of_bounds"),
    (_dimmer_over, "out_of_bounds"),
    (_dimmer_under, "out_of_bounds"),
], ids=lambda x: getattr(x, "__name__", x).strip("_"))
def test_refused_commands_are_reported_and_actuate_nothing(tmp_path: Path, make, reason):
    rig = make_rig(tmp_path)
    before = snapshot(rig)
    results = rig.reply(make(rig.clock.wall))
    assert results == [{"id": "c-1", "status": "refused", "reason": reason, "at": WALL0_MS}]
    assert_nothing_moved(rig, before)


def test_a_replayed_id_is_refused(tmp_path: Path):
    rig = make_rig(tmp_path)
    rig.reply(signed("c-1", "fan", 1))
    rig.reply(signed("c-9", "fan", 0))
    before = snapshot(rig)
    results = rig.reply(signed("c-1", "fan", 1))
    assert [(r["id"], r["reason"]) for r in results] == [("c-1", "replayed")]
    assert snapshot(rig) == before
    assert rig.pin(FAN_PIN) == 0.0


def test_a_replayed_id_is_refused_after_a_restart(tmp_path: Path):
    rig = make_rig(tmp_path)
    rig.reply(signed("c-1", "fan", 1))
    rig.controller.stop()
    rig = make_rig(tmp_path, clock=rig.clock)
    before = snapshot(rig)
    results = rig.reply(signed("c-1", "fan", 1))
    assert [(r["id"], r["reason"]) for r in results] == [("c-1", "replayed")]
    assert_nothing_moved(rig, before)


def test_a_forged_command_does_not_burn_its_id(tmp_path: Path):
    rig = make_rig(tmp_path)
    forged = {**signed("c-1", "fan", 1), "signature": forged_signature()}
    assert rig.reply(forged)[0]["reason"] == "bad_signature"
    assert rig.reply(signed("c-1", "fan", 1))[0]["status"] == "done"
    assert rig.pin(FAN_PIN) == 1.0


def test_an_expired_command_stays_refused_when_resent_later(tmp_path: Path):
    rig = make_rig(tmp_path)
    stale = signed("c-1", "fan", 1, not_after=WALL0_MS - 1)
    assert rig.reply(stale)[0]["reason"] == "expired"
    assert rig.reply(stale)[0]["reason"] == "replayed"
    assert rig.pin(FAN_PIN) == 0.0


GOOD = signed("c-1", "fan", 1)


@pytest.mark.parametrize(("item", "reported_id"), [
    (42, None),
    (None, None),
    ("c-1", None),
    ([GOOD], None),
    ({k: v for k, v in GOOD.items() if k != "id"}, None),
    ({**GOOD, "id": "has space"}, None),
    ({**GOOD, "id": "x" * 129}, None),
    ({**GOOD, "id": 7}, None),
    ({k: v for k, v in GOOD.items() if k != "actuator"}, "c-1"),
    ({**GOOD, "actuator": "Fan!"}, "c-1"),
    ({k: v for k, v in GOOD.items() if k != "value"}, "c-1"),
    ({**GOOD, "value": "1"}, "c-1"),
    ({**GOOD, "value": True}, "c-1"),
    ({**GOOD, "value": None}, "c-1"),
    ({k: v for k, v in GOOD.items() if k != "not_after"}, "c-1"),
    ({**GOOD, "not_after": str(GOOD["not_after"])}, "c-1"),
    ({**GOOD, "not_after": float(GOOD["not_after"])}, "c-1"),
    ({**GOOD, "not_after": -5}, "c-1"),
    ({k: v for k, v in GOOD.items() if k != "signature"}, "c-1"),
    ({**GOOD, "signature": 12}, "c-1"),
    ({**GOOD, "signature": ""}, "c-1"),
    ({**GOOD, "priority": "high"}, "c-1"),
])
def test_malformed_command_objects_are_refused(tmp_path: Path, item, reported_id):
    rig = make_rig(tmp_path)
    before = snapshot(rig)
    results = rig.reply(item)
    assert results == [{"id": reported_id, "status": "refused", "reason": "malformed",
                        "at": WALL0_MS}]
    assert_nothing_moved(rig, before)


@pytest.mark.parametrize("commands", [{"id": "c-1"}, "c-1", 3, None])
def test_a_commands_field_that_is_not_a_list_is_malformed(tmp_path: Path, commands):
    rig = make_rig(tmp_path)
    before = snapshot(rig)
    rig.controller.extra_fields()
    rig.controller.on_reply({"commands": commands})
    assert [(r["id"], r["reason"]) for r in rig.results()] == [(None, "malformed")]
    assert_nothing_moved(rig, before)


def test_a_reply_with_too_many_commands_runs_only_the_first_ones(tmp_path: Path):
    rig = make_rig(tmp_path)
    commands = [signed(f"c-{i}", "lamp_dimmer", 0.2 + (i % 7) / 10)
                for i in range(MAX_COMMANDS_PER_REPLY + 3)]
    results = rig.reply(*commands)
    assert [r["status"] for r in results] == ["done"] * MAX_COMMANDS_PER_REPLY + \
        ["refused"] * 3
    assert {r["reason"] for r in results[MAX_COMMANDS_PER_REPLY:]} == {"malformed"}


def test_without_a_public_key_every_command_is_refused(tmp_path: Path):
    rig = make_rig(tmp_path, control="command_hold = 60.0\n")
    before = snapshot(rig)
    assert rig.reply(signed("c-1", "fan", 1))[0]["reason"] == "bad_signature"
    assert_nothing_moved(rig, before)


def test_an_unreadable_public_key_file_refuses_commands_but_runs(tmp_path: Path):
    rig = make_rig(tmp_path, control=f'public_key_file = "{tmp_path / "missing.pub"}"\n')
    assert rig.pin(LIGHT_PIN) == 1.0
    assert rig.reply(signed("c-1", "fan", 1))[0]["reason"] == "bad_signature"


def test_a_public_key_file_in_the_documented_format_is_used(tmp_path: Path):
    key_dir = tmp_path / "keys"
    assert main(["cloud", "keygen", "--out", str(key_dir)]) == 0
    rig = make_rig(tmp_path, control=f'public_key_file = "{key_dir / "signing.pub"}"\n')
    queue = CommandQueue.from_key_file(key_dir / "signing.key")
    command = queue.sign(GATEWAY, "c-1", "fan", 1.0, WALL0_MS + 1000)
    assert rig.reply(command)[0]["status"] == "done"


# --- the unsynchronised clock -------------------------------------------------------------
def test_a_clock_that_boots_in_the_past_cannot_make_an_expired_command_fresh(tmp_path):
    rig = make_rig(tmp_path)  # clock synchronised: the floor is now WALL0
    rig.controller.stop()
    day_ms = 24 * 3600 * 1000
    clock = Clock(mono=5.0, wall=WALL0_MS - day_ms)  # rebooted with no RTC and no NTP yet
    rig = make_rig(tmp_path, clock=clock)
    rig.telemetry.clock_synchronized = False
    results = rig.reply(signed("c-old", "fan", 1, not_after=WALL0_MS - 3600_000),
                        signed("c-new", "fan", 1, not_after=WALL0_MS + 60_000))
    assert [(r["id"], r["status"], r["reason"]) for r in results] == [
        ("c-old", "refused", "expired"), ("c-new", "done", None)]


# --- results travel until acknowledged ----------------------------------------------------
def test_results_ride_on_every_batch_until_a_reply_confirms_them(tmp_path: Path):
    rig = make_rig(tmp_path)
    rig.reply(signed("c-1", "fan", 1))
    first = rig.controller.extra_fields()  # batch 1 encoded ... and fails
    assert [r["id"] for r in first["command_results"]] == ["c-1"]
    second = rig.controller.extra_fields()  # batch 1 again ... stored
    assert second == first
    rig.controller.on_reply({"stored": 10})
    assert rig.controller.extra_fields() == {}


def test_results_made_by_a_reply_are_not_acknowledged_by_it(tmp_path: Path):
    rig = make_rig(tmp_path)
    rig.controller.extra_fields()
    rig.controller.on_reply({"commands": [signed("c-1", "fan", 1)]})
    assert [r["id"] for r in rig.controller.extra_fields()["command_results"]] == ["c-1"]
    rig.controller.on_reply({"commands": [signed("c-2", "fan", 0)]})
    assert [r["id"] for r in rig.controller.extra_fields()["command_results"]] == ["c-2"]


def test_unacknowledged_results_survive_a_restart(tmp_path: Path):
    rig = make_rig(tmp_path)
    rig.reply(signed("c-1", "fan", 1))
    rig.controller.stop()
    rig = make_rig(tmp_path, clock=rig.clock)
    assert [r["id"] for r in rig.results()] == ["c-1"]


# --- the reference cloud's side -----------------------------------------------------------
def test_the_queue_redelivers_until_a_result_arrives_and_keeps_the_first_result():
    queue = CommandQueue(SIGNING_KEY, wall_ms=lambda: WALL0_MS)
    command = queue.queue(GATEWAY, "fan", 1.0, ttl_s=60, command_id="c-1")
    assert command["not_after"] == WALL0_MS + 60_000
    assert verify(SIGNING_KEY.public_key(),
                  canonical_bytes(GATEWAY, "c-1", "fan", 1.0, WALL0_MS + 60_000),
                  command["signature"])
    assert queue.on_batch("alatau-cab-0999", {}) == {}
    assert queue.on_batch(GATEWAY, {}) == {"commands": [command]}
    assert queue.on_batch(GATEWAY, {}) == {"commands": [command]}  # reply lost? again
    done = {"id": "c-1", "status": "done", "reason": None, "at": WALL0_MS}
    assert queue.on_batch(GATEWAY, {"command_results": [done]}) == {}
    queue.on_batch(GATEWAY, {"command_results": [{**done, "status": "refused",
                                                  "reason": "replayed"}]})
    assert queue.result(GATEWAY, "c-1") == {**done, "received_at": WALL0_MS}


def test_the_queue_stops_offering_an_expired_command():
    now = [WALL0_MS]
    queue = CommandQueue(SIGNING_KEY, wall_ms=lambda: now[0])
    queue.queue(GATEWAY, "fan", 1.0, ttl_s=1)
    now[0] += 1001
    assert queue.on_batch(GATEWAY, {}) == {}


def test_cloud_keygen_writes_a_key_pair_and_refuses_to_overwrite(tmp_path: Path, capsys):
    out = tmp_path / "keys"
    assert main(["cloud", "keygen", "--out", str(out)]) == 0
    private = private_key_from_text((out / "signing.key").read_text())
    public = public_key_from_text((out / "signing.pub").read_text())
    assert os.stat(out / "signing.key").st_mode & 0o777 == 0o600
    message = b"check"
    assert public.verify(private.sign(message), message) is None
    assert "public_key = " in capsys.readouterr().out
    assert main(["cloud", "keygen", "--out", str(out)]) == 2
    assert "already exists; not overwriting a key" in capsys.readouterr().err


def test_cloud_without_listen_or_keygen_is_a_usage_error(capsys):
    assert main(["cloud"]) == 2
    assert "--listen HOST:PORT and --db PATH are required" in capsys.readouterr().err


def test_cloud_with_a_bad_signing_key_is_a_usage_error(tmp_path: Path, capsys):
    bad = tmp_path / "bad.key"
    bad.write_text("c2hvcnQ=\n")
    assert main(["cloud", "--listen", "127.0.0.1:0", "--db", str(tmp_path / "c.db"),
                 "--signing-key", str(bad)]) == 2
    assert "must be base64 of 32 raw bytes, not 5" in capsys.readouterr().err


def test_the_admin_endpoint_queues_signed_commands_and_shows_results(tmp_path: Path):
    async def go() -> None:
        cloud = CloudServer(tmp_path / "cloud.db")
        queue = CommandQueue(SIGNING_KEY)
        queue.install(cloud)
        await cloud.start()
        base = f"http://127.0.0.1:{cloud.port}/_admin/commands"
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(base, json={"gateway": GATEWAY, "actuator": "fan",
                                                 "value": 1, "ttl_s": 30}) as resp:
                    assert resp.status == 201
                    command = (await resp.json())["command"]
                async with http.post(base, json={"gateway": GATEWAY, "actuator": "fan",
                                                 "value": "on"}) as resp:
                    assert resp.status == 400
                    assert "value must be a number" in (await resp.json())["error"]
                async with http.get(base, params={"gateway": GATEWAY}) as resp:
                    waiting = await resp.json()
                queue.on_batch(GATEWAY, {"command_results": [
                    {"id": command["id"], "status": "done", "reason": None, "at": 1}]})
                async with http.get(base) as resp:
                    answered = await resp.json()
        finally:
            await cloud.stop()
        assert waiting == {GATEWAY: {"queued": [command], "results": []}}
        assert answered[GATEWAY]["queued"] == []
        assert [r["id"] for r in answered[GATEWAY]["results"]] == [command["id"]]

    asyncio.run(go())


# --- end to end: uploader, reference cloud, controller ------------------------------------
def test_a_queued_command_is_delivered_executed_and_its_result_reaches_the_cloud(tmp_path):
    async def go() -> None:
        cloud = CloudServer(tmp_path / "cloud.db")
        queue = CommandQueue(SIGNING_KEY)
        queue.install(cloud)
        await cloud.start()
        config = make_config(tmp_path, url=cloud.url())
        telemetry = Telemetry()
        from drivers.fake.gpio import mock_factory

        factory = mock_factory()
        controller = Controller(config, telemetry, factory, serve_manual=False)
        controller.start()
        store = Store(tmp_path / "buffer.db")
        uplink = UplinkConfig(url=cloud.url(), flush_interval=0.02, timeout=5.0,
                              backoff_initial=0.01, backoff_max=0.05)
        uploader = Uploader(uplink, GATEWAY, store, direct, telemetry,
                            on_reply=controller.on_reply,
                            extra_fields=controller.extra_fields)
        command = queue.queue(GATEWAY, "fan", 1.0, ttl_s=60)

        async def sensor() -> None:  # readings keep coming, as from the poller
            while True:
                store.add(Reading("street_light_level", 1764337000000,
                                  {"illuminance_lux": 10.0}))
                store.commit()
                await asyncio.sleep(0.01)

        tasks = [asyncio.create_task(uploader.run()), asyncio.create_task(sensor())]
        try:
            for _ in range(1000):
                if queue.result(GATEWAY, command["id"]) is not None and \
                        not controller.ledger.pending_results(10):
                    break
                await asyncio.sleep(0.01)
        finally:
            uploader.stop()
            tasks[1].cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            controller.stop()
            store.close()
            await cloud.stop()
        result = queue.result(GATEWAY, command["id"])
        assert result is not None and result["status"] == "done"
        assert [s.state for s in factory.pin(FAN_PIN).states][-2] == 1.0  # before release
        assert queue.deliveries == 1
        assert telemetry.actuators["fan"].last_command == f"{command['id']}: 1 done"

    asyncio.run(go())


def test_a_reply_that_is_not_json_actuates_nothing(tmp_path: Path):
    async def garbage(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200, body=b'{"commands": [{"id": "c-1", "actu',
                            content_type="application/json")

    async def go() -> None:
        app = web.Application()
        app.add_routes([web.post("/v1/batches", garbage)])
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/batches"
        rig = make_rig(tmp_path)
        before = snapshot(rig)
        store = Store(tmp_path / "buffer.db")
        store.add(Reading("street_light_level", 1764337000000, {"illuminance_lux": 1.0}))
        store.commit()
        uploader = Uploader(UplinkConfig(url=url), GATEWAY, store, direct, rig.telemetry,
                            on_reply=rig.controller.on_reply,
                            extra_fields=rig.controller.extra_fields)
        task = asyncio.create_task(uploader.run())
        try:
            for _ in range(500):
                if store.readings == 0:
                    break
                await asyncio.sleep(0.01)
        finally:
            uploader.stop()
            await task
            store.close()
            await runner.cleanup()
        assert store.acked_seq == 1
        assert_nothing_moved(rig, before)
        assert rig.results() == []

    asyncio.run(go())


def test_results_are_valid_json_on_the_wire(tmp_path: Path):
    rig = make_rig(tmp_path)
    rig.reply(signed("c-1", "fan", 1), 42)
    assert json.loads(json.dumps(rig.controller.extra_fields()))["command_results"][1] == {
        "id": None, "status": "refused", "reason": "malformed", "at": WALL0_MS}
