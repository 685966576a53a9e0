"""The configuration reference names every key the validator accepts."""

from __future__ import annotations

import re
from pathlib import Path

from gateway import config

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_every_config_key_is_documented() -> None:
    text = DOC.read_text()
    tables = {
        "gateway": config.GATEWAY_KEYS, "storage": config.STORAGE_KEYS,
        "uplink": config.UPLINK_KEYS, "health": config.HEALTH_KEYS,
        "sensors": config.SENSOR_KEYS, "actuators": config.ACTUATOR_KEYS,
        "rules": config.RULE_KEYS, "control": config.CONTROL_KEYS,
    }
    missing = []
    for table, keys in tables.items():
        section = re.search(rf"^## `\[{{1,2}}{table}\]{{1,2}}`$(.*?)(?=^## |\Z)", text,
                            re.M | re.S)
        assert section, f"no section for [{table}] in {DOC.name}"
        for key in keys:
            if f"`{key.name}`" not in section.group(1):
                missing.append(f"{table}.{key.name}")
    assert not missing, f"undocumented keys: {', '.join(missing)}"
