"""Cloud commands' canonical bytes and Ed25519 keys: shared by the gateway and the cloud.

The canonical form is defined byte for byte in docs/protocol.md ("Commands and command
results"); any signer that follows that text interoperates, whatever its JSON library.
Keys travel as base64 of their raw 32 bytes (RFC 8032 public key, or private seed).
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
from decimal import Decimal
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

CANONICAL_VERSION = "alatau-command/1"
"""First field of the canonical form: keeps these signatures from meaning anything else."""
COMMAND_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
ACTUATOR_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
GATEWAY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KEY_BYTES = 32
SIGNATURE_BYTES = 64


class KeyFormatError(ValueError):
    """A key is missing, unreadable or not in the documented format."""


def format_value(value: float) -> str:
    """The value as signed: shortest round-trip decimal, plain notation, no ``.0``.

    Text is signed rather than a float so that signers in other languages agree: ``1``
    and ``1.0`` are both ``1``; ``0.35`` is ``0.35``; ``1e-05`` is ``0.00001``.
    """
    if not math.isfinite(value):
        raise ValueError(f"value {value!r} is not a finite number")
    if value == int(value):
        return str(int(value))
    return format(Decimal(repr(float(value))), "f")


def canonical_bytes(gateway: str, command_id: str, actuator: str, value: float,
                    not_after_ms: int) -> bytes:
    """The exact bytes a command's signature covers (docs/protocol.md).

    The identifiers are restricted to characters JSON never escapes, so the text below
    is the JSON any library would write for them.
    """
    for what, text, pattern in (("gateway", gateway, GATEWAY_RE),
                                ("id", command_id, COMMAND_ID_RE),
                                ("actuator", actuator, ACTUATOR_RE)):
        if not pattern.match(text):
            raise ValueError(f"command {what} {text!r} has characters outside {pattern.pattern}")
    return (f'{{"v":"{CANONICAL_VERSION}","gateway":"{gateway}","id":"{command_id}",'
            f'"actuator":"{actuator}","value":{format_value(value)},'
            f'"not_after":{int(not_after_ms)}}}').encode("ascii")


# --- keys ------------------------------------------------------------------------------


def _b64_32(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError(f"{what} is not base64") from None
    if len(raw) != KEY_BYTES:
        raise KeyFormatError(f"{what} must be base64 of {KEY_BYTES} raw bytes, not {len(raw)}")
    return raw


def public_key_from_text(text: str, what: str = "public key") -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_b64_32(text, what))


def private_key_from_text(text: str, what: str = "signing key") -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(_b64_32(text, what))


def public_key_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def private_key_text(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    return base64.b64encode(raw).decode("ascii")


def read_key_file(path: str | Path, what: str) -> str:
    try:
        return Path(path).read_text(encoding="ascii")
    except FileNotFoundError:
        raise KeyFormatError(f"{what} {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFormatError(f"{what} {path}: cannot read ({exc})") from None


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message)).decode("ascii")


def verify(key: Ed25519PublicKey, message: bytes, signature: str) -> bool:
    """True only for a well-formed signature by ``key`` over exactly ``message``."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(raw) != SIGNATURE_BYTES:
        return False
    try:
        key.verify(raw, message)
    except InvalidSignature:
        return False
    return True


def generate_key_pair(out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``signing.key`` (private seed, mode 0600) and ``signing.pub`` into ``out_dir``.

    Refuses to overwrite: replacing a signing key silently would lock every gateway out.
    """
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / "signing.key", directory / "signing.pub"
    for path in (private_path, public_path):
        if path.exists():
            raise FileExistsError(f"{path} already exists; not overwriting a key")
    key = Ed25519PrivateKey.generate()
    with open(private_path, "x", encoding="ascii", opener=_private_opener) as f:
        f.write(private_key_text(key) + "\n")
    public_path.write_text(public_key_text(key.public_key()) + "\n", encoding="ascii")
    return private_path, public_path


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)
