"""``alatau-gateway status``: the health object as a table a technician can read."""

from __future__ import annotations

from typing import Any

from gateway.power import warnings


def _age(value: Any) -> str:
    if value is None:
        return "never"
    seconds = float(value)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def render_status(health: dict[str, Any]) -> str:
    lines = [f"gateway {health.get('gateway', '?')}: {health.get('status', '?').upper()}"
             f"   (up {float(health.get('uptime_s', 0)):.0f} s)", ""]
    sensors = health.get("sensors", {})
    if sensors:
        lines.append(f"{'SENSOR':<20} {'STATE':<9} {'LAST READING':<14} {'ERRORS':>6}  LAST ERROR")
        for name, s in sensors.items():
            error = (s.get("last_error") or "")[:60] if s.get("state") != "ok" else ""
            lines.append(f"{name:<20} {s.get('state', '?'):<9} "
                         f"{_age(s.get('last_reading_age_s')):<14} {s.get('errors', 0):>6}  "
                         f"{error}")
        lines.append("")
    b = health.get("buffer", {})
    lines.append(f"buffer:   {b.get('readings', 0)} readings, {b.get('bytes', 0)} bytes, "
                 f"oldest {_age(b.get('oldest_age_s'))}, {b.get('dead_letters', 0)} dead letters"
                 + (f", dropped {b['dropped']}" if b.get("dropped") else ""))
    u = health.get("uplink", {})
    lines.append(f"uplink:   {u.get('state', '?')}, last success "
                 f"{_age(u.get('last_success_age_s'))}"
                 + (f", last error: {u['last_error']}" if u.get("last_error") else ""))
    actuators = health.get("actuators", {})
    for name, a in actuators.items():
        lines.append(f"actuator: {name} = {a.get('state')} (by {a.get('source')})"
                     + (f", last command {a['last_command']}" if a.get("last_command") else ""))
    clock = health.get("clock", {})
    lines.append(f"clock:    {'synchronised' if clock.get('synchronized') else 'NOT synchronised'}")
    supply = health.get("power", {})
    said = warnings(supply)
    if said:
        lines.append(f"power:    WARNING: {'; '.join(said)} (get_throttled "
                     f"0x{supply.get('bits') or 0:x}): check the supply and its cable")
    elif supply.get("available"):
        lines.append("power:    ok")
    return "\n".join(lines)
