"""The fakes log what they are sent, for tests; in a long ``run --simulate`` (days, in a
soak or on a laptop) those logs must not grow without end."""

from __future__ import annotations

from drivers.fake.base import RecentLog
from drivers.fake.bme280 import FakeBME280
from drivers.fake.i2c import FakeSMBus


def test_a_log_keeps_the_recent_entries_within_twice_its_limit() -> None:
    log: RecentLog[int] = RecentLog(limit=100)
    for i in range(10_000):
        log.append(i)
        assert len(log) <= 200
    assert log[-1] == 9_999 and log == list(range(10_000 - len(log), 10_000))
    assert len(log) >= 100


def test_a_fake_bus_read_for_a_long_time_stays_bounded() -> None:
    fake = FakeBME280()
    bus = FakeSMBus([fake])
    for _ in range(20_000):
        bus.write_quick(fake.address)
    assert len(bus.transactions) <= 2 * bus.transactions.limit
    assert bus.transactions[-1] == (fake.address, "q", b"")
