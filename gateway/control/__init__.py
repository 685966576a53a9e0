"""Actuators and control: fail-safe outputs, offline rules, signed cloud commands.

``Controller`` plugs into the service (see ``gateway.service.Controller``);
``actuate_by_hand`` is the ``actuate`` command. Design and choices: docs/control.md;
the wire format of commands and their results: docs/protocol.md.
"""

from gateway.control.controller import Controller, socket_path, state_path
from gateway.control.manual import actuate_by_hand

__all__ = ["Controller", "actuate_by_hand", "socket_path", "state_path"]
