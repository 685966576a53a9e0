"""Pushes the buffer to the city cloud in batches, at least once, in seq order.

Reply handling follows the ingest protocol (docs/protocol.md): 2xx and 409 acknowledge;
413 splits; 429/503 wait for Retry-After; 408, other 5xx, timeouts and connection errors
back off exponentially with full jitter; 401/403 keep everything and retry slowly; any
other 4xx is a poison batch, split until the bad reading(s) are isolated and moved to
the dead-letter table. Nothing leaves the buffer before a 2xx or 409.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import gzip
import json
import logging
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from gateway.config import UplinkConfig
from gateway.store import Batch, Store, StoreError
from gateway.telemetry import Telemetry

log = logging.getLogger(__name__)

AUTH_RETRY_S = 60.0
RETRY_AFTER_MAX_S = 3600.0
TOKEN_CREDENTIAL = "token"
SYSTEMIC_REJECTIONS = 8
"""Readings dead-lettered in a row, with no batch stored between, before the uploader
concludes that the cloud refuses everything and stops dead-lettering."""
GZIP_LEVEL = 6
"""See docs/performance.md: level against bytes on the metered link and CPU per reading."""

StoreCall = Callable[..., Awaitable[Any]]


class UplinkSetupError(Exception):
    """The uplink cannot be set up (missing token or certificate file)."""


def read_token(token_file: str | None) -> str | None:
    """The bearer token: systemd credential ``token`` first, else ``token_file``."""
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / TOKEN_CREDENTIAL).is_file():
        path = Path(credentials) / TOKEN_CREDENTIAL
    elif token_file:
        path = Path(token_file)
    else:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UplinkSetupError(f"uplink.token_file: cannot read {path}: {exc.strerror}") from None
    if not token or any(c.isspace() for c in token):
        raise UplinkSetupError(f"uplink.token_file: {path} must hold one token, no spaces")
    return token


def ssl_context(config: UplinkConfig) -> ssl.SSLContext | None:
    if not config.url.startswith("https:"):
        return None
    try:
        context = ssl.create_default_context(cafile=config.ca_file)
        if config.cert_file:
            context.load_cert_chain(config.cert_file, config.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise UplinkSetupError(f"uplink TLS files: {exc}") from None
    return context


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_MAX_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    delta = when.timestamp() - (time.time() if now is None else now)
    return min(max(delta, 0.0), RETRY_AFTER_MAX_S)


def classify(status: int) -> str:
    if 200 <= status < 300 or status == 409:
        return "stored"
    if status == 413:
        return "too_large"
    if status in (429, 503):
        return "throttled"
    if status in (401, 403):
        return "unauthorized"
    if status == 408 or status >= 500:
        return "server_error"
    if 400 <= status < 500:
        return "rejected"
    return "server_error"


@dataclass
class Reply:
    status: int
    body: bytes
    retry_after: str | None


class Backoff:
    """Exponential backoff with full jitter, capped."""

    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        ceiling = min(self.max_s, self.initial_s * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return self._rng.uniform(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class Uploader:
    def __init__(
        self,
        config: UplinkConfig,
        gateway_id: str,
        store: Store,
        run_store: StoreCall,
        telemetry: Telemetry,
        *,
        on_reply: Callable[[dict[str, Any]], None] | None = None,
        extra_fields: Callable[[], dict[str, Any]] | None = None,
        on_delivered: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.config = config
        self.gateway_id = gateway_id
        self.store = store
        self.run_store = run_store
        self.telemetry = telemetry
        self.on_reply = on_reply
        self.extra_fields = extra_fields
        self.on_delivered = on_delivered
        self.token = read_token(config.token_file)
        self.ssl = ssl_context(config)
        self.backoff = Backoff(config.backoff_initial, config.backoff_max)
        self.wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._gateway_json = json.dumps(gateway_id).encode()
        self._dead_in_a_row = 0
        self._prepared: tuple[Batch, bytes, bytes] | None = None
        """The next batch, the controller's fields and the request body made of them, made
        while the batch before was sent."""

    # --- the loop ------------------------------------------------------------------

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        connector = aiohttp.TCPConnector(ssl=self.ssl if self.ssl is not None else False,
                                         limit=2)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            self._session = session
            next_flush = time.monotonic()
            while not self._stopping.is_set():
                now = time.monotonic()
                full = self.store.readings >= self.config.batch_max_readings
                if not full and now < next_flush:
                    await self._sleep(next_flush - now, wakeable=True)
                    continue
                next_flush = time.monotonic() + self.config.flush_interval
                await self.flush()

    async def flush(self) -> None:
        """Send everything buffered now, batch after batch, until empty or failing.

        While a batch is on its way, the next one is read, encoded and compressed, so the
        cloud's work and the gateway's overlap (docs/performance.md). It is used only if
        the batch before it went through at the first attempt; otherwise it is read anew.
        """
        uplink = self.telemetry.uplink
        ahead: asyncio.Task[Batch | None] | None = None
        try:
            while not self._stopping.is_set():
                if ahead is None:
                    batch = await self.run_store(
                        self.store.next_batch, self.config.batch_max_readings,
                        self.config.batch_max_bytes)
                else:
                    batch, ahead = await ahead, None
                if batch is None:
                    if uplink.state in ("idle", "retrying"):
                        uplink.state = "ok"
                    return
                if batch.lines:
                    ahead = asyncio.create_task(self._prepare(batch.last_seq))
                failures = sum(uplink.failures.values())
                if not await self._deliver(batch):
                    await self.run_store(self.store.release)
                    return
                if ahead is not None and sum(uplink.failures.values()) != failures:
                    ahead.cancel()  # read before the retries: the buffer may have changed
                    with contextlib.suppress(asyncio.CancelledError):
                        await ahead
                    ahead = None
        finally:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ahead
            self._prepared = None

    async def _prepare(self, after_seq: int) -> Batch | None:
        """The batch after ``after_seq``, with its request body made ready."""
        batch: Batch | None = await self.run_store(
            self.store.next_batch, self.config.batch_max_readings,
            self.config.batch_max_bytes, after_seq)
        if batch is not None:
            extra = self._extra()
            body = await asyncio.get_running_loop().run_in_executor(
                None, self._wire_body, batch, extra)
            self._prepared = (batch, extra, body)
        return batch

    def stop(self) -> None:
        self._stopping.set()
        self.wake.set()

    async def _sleep(self, seconds: float, wakeable: bool = False) -> None:
        waits = [asyncio.ensure_future(self._stopping.wait())]
        if wakeable:
            waits.append(asyncio.ensure_future(self.wake.wait()))
        try:
            await asyncio.wait(waits, timeout=max(0.0, seconds),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if wakeable:
            self.wake.clear()

    # --- one batch -----------------------------------------------------------------

    async def _deliver(self, batch: Batch) -> bool:
        """Deliver ``batch`` (splitting as needed). False: gave up for now (stopping)."""
        while not self._stopping.is_set():
            reply = await self._post(batch)
            kind = "connection" if reply is None else classify(reply.status)
            uplink = self.telemetry.uplink
            if kind == "stored":
                assert reply is not None
                await self._stored(batch, reply)
                return True
            uplink.failures[kind] += 1
            if kind in ("too_large", "rejected") and reply is not None:
                if len(batch.lines) > 1:
                    left, right = batch.split()
                    log.warning("batch %s refused with %d: splitting into %d + %d readings",
                                self._key(batch), reply.status, len(left.lines),
                                len(right.lines))
                    return await self._deliver(left) and await self._deliver(right)
                if self._dead_in_a_row >= SYSTEMIC_REJECTIONS:
                    # Everything is being refused: a cloud or gateway fault, not poison.
                    # Keep the data and retry slowly rather than dead-letter the lot.
                    uplink.state = "rejecting"
                    wait = max(AUTH_RETRY_S, self.backoff.next())
                    uplink.retry_at_mono = time.monotonic() + wait
                    log.error("the cloud refuses every reading (%s); keeping them, retrying "
                              "in %.0f s", uplink.last_error, wait)
                    await self.run_store(self.store.release)
                    await self._sleep(wait)
                    continue
                self._dead_in_a_row += 1
                reason = _reason(reply)
                log.error("reading seq %d refused by the cloud (%d: %s): moved to dead letters",
                          batch.first_seq, reply.status, reason)
                try:
                    await self.run_store(self.store.dead_letter, batch, reply.status, reason)
                except StoreError as exc:
                    # A full disk: the readings stay, and are refused again once it has
                    # room. The uploader keeps its loop (a crash would change nothing).
                    self._dead_in_a_row -= 1  # the same refusal will be counted again
                    uplink.state = "retrying"
                    uplink.last_error = str(exc)
                    log.error("%s", exc)
                    await self._sleep(self.backoff.next())
                    return False
                self.backoff.reset()
                return True
            if kind == "throttled":
                assert reply is not None
                after = retry_after_seconds(reply.retry_after)
                wait = self.backoff.next() if after is None else after
                uplink.state = "throttled"
            elif kind == "unauthorized":
                assert reply is not None
                wait = max(AUTH_RETRY_S, self.backoff.next())
                uplink.state = "unauthorized"
                try:
                    self.token = read_token(self.config.token_file)
                except Exception as exc:  # a vanished token file is reported, not fatal
                    uplink.last_error = str(exc)
            else:
                wait = self.backoff.next()
                uplink.state = "retrying"
            uplink.retry_at_mono = time.monotonic() + wait
            log.warning("upload of %s failed (%s); retrying in %.1f s",
                        self._key(batch), uplink.last_error, wait)
            await self.run_store(self.store.release)
            await self._sleep(wait)
        return False

    async def _stored(self, batch: Batch, reply: Reply) -> None:
        await self.run_store(self.store.ack, batch)
        uplink = self.telemetry.uplink
        uplink.state = "ok"
        uplink.last_success_mono = time.monotonic()
        uplink.uploads += 1
        uplink.readings_sent += len(batch.lines)
        uplink.retry_at_mono = None
        self.backoff.reset()
        self._dead_in_a_row = 0
        if self.on_reply is not None and reply.body:
            try:
                body = json.loads(reply.body)
            except ValueError:
                log.warning("cloud reply to %s is not JSON; ignored", self._key(batch))
                return
            if isinstance(body, dict):
                self.on_reply(body)

    def _key(self, batch: Batch) -> str:
        first, last = batch.key_range
        return f"{self.gateway_id}:{first}-{last}"

    def encode(self, batch: Batch) -> bytes:
        return self._encode(batch, self._extra())

    def _extra(self) -> bytes:
        """The controller's fields (command results), read on the event loop."""
        extra = b""
        if self.extra_fields is not None:
            for name, value in self.extra_fields().items():
                extra += b"," + json.dumps(name).encode() + b":" + json.dumps(value).encode()
        return extra

    def _encode(self, batch: Batch, extra: bytes) -> bytes:
        key = self._key(batch)
        drops = ",".join(
            f'{{"from_seq":{a},"to_seq":{b},"reason":{json.dumps(r)}}}' for a, b, r in batch.drops)
        return b"".join((
            b'{"gateway":', self._gateway_json, b',"batch":"', key.encode(),
            b'","readings":[', b",".join(batch.lines), b'],"dropped":[', drops.encode(), b"]",
            extra, b"}",
        ))

    def _wire_body(self, batch: Batch, extra: bytes) -> bytes:
        body = self._encode(batch, extra)
        return compress_body(body) if self.config.compression == "gzip" else body

    async def _post(self, batch: Batch) -> Reply | None:
        assert self._session is not None
        headers = {"Content-Type": "application/json", "Idempotency-Key": self._key(batch)}
        prepared, self._prepared = self._prepared, None
        extra = self._extra()  # as of now: a command result may have come in meanwhile
        if prepared is not None and prepared[0] is batch and prepared[1] == extra:
            body = prepared[2]
        else:
            body = await asyncio.get_running_loop().run_in_executor(
                None, self._wire_body, batch, extra)
        if self.config.compression == "gzip":
            headers["Content-Encoding"] = "gzip"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        uplink = self.telemetry.uplink
        uplink.last_attempt_mono = time.monotonic()
        try:
            async with self._session.post(self.config.url, data=body, headers=headers) as resp:
                content = await resp.read()
                uplink.bytes_sent += len(body)
                if not (200 <= resp.status < 300 or resp.status == 409):
                    uplink.last_error = f"HTTP {resp.status}: {_snippet(content)}"
                return Reply(resp.status, content, resp.headers.get("Retry-After"))
        except TimeoutError:
            uplink.last_error = f"timeout after {self.config.timeout:g} s"
        except aiohttp.ClientError as exc:
            uplink.last_error = f"{type(exc).__name__}: {exc}"
        except OSError as exc:
            uplink.last_error = f"network error: {exc}"
        return None


def compress_body(body: bytes) -> bytes:
    """A request body as sent with ``Content-Encoding: gzip``."""
    return gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)


def _snippet(content: bytes) -> str:
    text = content[:200].decode("utf-8", "replace").strip()
    return text.replace("\n", " ") or "(empty body)"


def _reason(reply: Reply) -> str:
    try:
        body = json.loads(reply.body)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return str(body["error"])[:500]
    except ValueError:
        pass
    return _snippet(reply.body)
