"""SD-card wear: the service writes its buffer and nothing else. Logs go to stderr
(journald keeps them, in RAM on a device with a volatile journal), at INFO by default."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway import cli

BUFFER_FILES = {"buffer.db", "buffer.db-wal", "buffer.db-shm", "buffer.db.seq"}

CONFIG = """
[gateway]
id = "alatau-wear-0001"

[storage]
path = "{state}/buffer.db"
commit_interval = 0.2
min_free_bytes = 0

[uplink]
url = "http://127.0.0.1:9/v1/batches"
flush_interval = 0.5
backoff_initial = 0.1
backoff_max = 0.5

[health]
listen = "127.0.0.1:0"

[[sensors]]
name = "cabinet_air"
driver = "bme280"
bus = 1
address = 0x76
interval = 0.2

[[sensors]]
name = "street_pm"
driver = "pms5003"
port = "/dev/serial0"
interval = 1.0
"""


def test_the_service_writes_only_its_buffer_and_logs_to_stderr_at_info(tmp_path: Path) -> None:
    state, work, home = tmp_path / "state", tmp_path / "work", tmp_path / "home"
    for d in (state, work, home):
        d.mkdir()
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG.format(state=state))
    env = {k: v for k, v in os.environ.items()
           if k not in ("JOURNAL_STREAM", "INVOCATION_ID", "NOTIFY_SOCKET")}
    env.update(HOME=str(home), TMPDIR=str(home), PYTHONDONTWRITEBYTECODE="1")
    service = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "--config", str(config), "--simulate"],
        cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (state / "buffer.db-wal").exists():
            assert service.poll() is None, service.communicate()
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.1)
        time.sleep(4.0)  # reads, commits, failed uploads (nothing listens on port 9)
        files_while_running = {p.name for p in state.iterdir()}
        service.send_signal(signal.SIGTERM)
        out, err = service.communicate(timeout=30)
    finally:
        if service.poll() is None:
            service.kill()
            service.communicate()
    assert service.returncode == 0, err
    assert files_while_running <= BUFFER_FILES, files_while_running - BUFFER_FILES
    assert {p.name for p in state.iterdir()} <= BUFFER_FILES
    assert list(work.iterdir()) == [], "files written to the working directory"
    assert list(home.iterdir()) == [], "files written to HOME or TMPDIR"
    assert out == ""  # stdout stays free for the commands that print results
    lines = err.splitlines()
    assert any(" INFO gateway.service: gateway alatau-wear-0001 running" in line
               for line in lines), err
    assert any(" WARNING gateway.uplink: upload of" in line for line in lines), err
    assert not [line for line in lines if " DEBUG " in line], "debug output by default"


def test_logging_is_stderr_only_at_info_unless_verbose(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    root = logging.getLogger()
    saved = root.level, root.handlers[:]
    try:
        for variables in ({}, {"JOURNAL_STREAM": "8:1234", "INVOCATION_ID": "abc"}):
            for key, value in variables.items():
                monkeypatch.setenv(key, value)
            cli.setup_logging()
            assert root.level == logging.INFO
            assert root.handlers, "no handler: messages would be lost"
            for handler in root.handlers:
                assert type(handler) is logging.StreamHandler, handler
                assert handler.stream is sys.stderr
        cli.setup_logging(verbose=True)
        assert root.level == logging.DEBUG
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
