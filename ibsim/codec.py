"""TWS API wire format: 4-byte length frames of NUL-terminated text fields.

Pure: no sockets. The front end feeds received bytes into :class:`FrameDecoder` and writes
what :func:`encode_frame` returns, so the framing rules can be fuzzed without a network.
"""

from __future__ import annotations

import builtins
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

API_SIGN = b"API\0"
MAX_SERVER_VERSION = 178
MIN_SERVER_VERSION = 157
# A real gateway refuses absurd frames; 16 MiB is far above any request a client sends.
MAX_FRAME_BYTES = 16 * 1024 * 1024
UNSET_DOUBLE = 1.7976931348623157e308
UNSET_INTEGER = 2**31 - 1

_VERSION_RE = re.compile(r"^v(\d+)(?:\.\.(\d+))?(?:\s+(.*))?$")


class ProtocolError(ValueError):
    """The peer sent bytes that break the framing or the handshake (what and where)."""


@dataclass(frozen=True, slots=True)
class Handshake:
    """What a client offered in its first frame after ``API\\0``."""

    min_version: int
    max_version: int
    options: str


def parse_handshake(payload: bytes) -> Handshake:
    """Parse ``vMIN..MAX [options]``; raise ProtocolError naming the bad text."""
    try:
        text = payload.decode("ascii").strip("\0").strip()
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"handshake: version text is not ASCII ({payload[:40]!r})") from exc
    match = _VERSION_RE.match(text)
    if match is None:
        raise ProtocolError(f"handshake: expected 'vMIN..MAX', got {text[:40]!r}")
    low = int(match.group(1))
    high = int(match.group(2) or match.group(1))
    if low > high:
        raise ProtocolError(f"handshake: min version {low} above max version {high}")
    return Handshake(min_version=low, max_version=high, options=match.group(3) or "")


def negotiate_version(handshake: Handshake) -> int:
    """The server version a gateway answers: min(client max, 178); protobuf (201+) stays off."""
    version = min(handshake.max_version, MAX_SERVER_VERSION)
    if version < MIN_SERVER_VERSION:
        raise ProtocolError(
            f"handshake: client max version {handshake.max_version} below {MIN_SERVER_VERSION}"
        )
    return version


def format_field(value: object) -> str:
    """One field as the wire wants it: bools 0/1, None empty, floats without noise."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if value == UNSET_DOUBLE:
            return ""
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value)) if value != 0 else "0"
        return repr(value)
    return str(value)


def encode_fields(fields: Iterable[object]) -> bytes:
    """Payload of one message: every field followed by NUL."""
    return "".join(format_field(f) + "\0" for f in fields).encode("utf-8")


def encode_frame(fields: Iterable[object]) -> bytes:
    """A whole frame: big-endian length prefix + payload."""
    payload = encode_fields(fields)
    return struct.pack(">I", len(payload)) + payload


def frame_payload(payload: bytes) -> bytes:
    """Prefix an already encoded payload with its length."""
    return struct.pack(">I", len(payload)) + payload


def split_fields(payload: bytes) -> list[str]:
    """Fields of one payload; a trailing NUL ends the last field, bad UTF-8 is replaced."""
    text = payload.decode("utf-8", errors="replace")
    fields = text.split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    return fields


class FrameDecoder:
    """Incremental decoder: feed bytes, get whole payloads; the prefix ``API\\0`` once first."""

    def __init__(self, *, expect_api_sign: bool = True, max_frame: int = MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._want_sign = expect_api_sign
        self._max_frame = max_frame

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every complete payload; raise ProtocolError on garbage."""
        self._buffer.extend(data)
        if self._want_sign:
            if len(self._buffer) < len(API_SIGN):
                if not API_SIGN.startswith(bytes(self._buffer)):
                    raise ProtocolError(
                        f"handshake: expected b'API\\\\0' prefix, got {bytes(self._buffer)!r}"
                    )
                return []
            if bytes(self._buffer[: len(API_SIGN)]) != API_SIGN:
                raise ProtocolError(
                    f"handshake: expected b'API\\\\0' prefix, got {bytes(self._buffer[:4])!r}"
                )
            del self._buffer[: len(API_SIGN)]
            self._want_sign = False
        frames: list[bytes] = []
        while len(self._buffer) >= 4:
            (length,) = struct.unpack(">I", self._buffer[:4])
            if length > self._max_frame:
                raise ProtocolError(f"frame: length {length} above limit {self._max_frame}")
            if len(self._buffer) < 4 + length:
                break
            frames.append(bytes(self._buffer[4 : 4 + length]))
            del self._buffer[: 4 + length]
        return frames


class FieldReader:
    """Cursor over a message's fields with typed reads that name the field when they fail."""

    def __init__(self, fields: list[builtins.str], *, message: builtins.str) -> None:
        self._fields = fields
        self._pos = 0
        self._message = message

    @property
    def remaining(self) -> builtins.int:
        """How many fields are left to read."""
        return len(self._fields) - self._pos

    def str(self, name: builtins.str) -> builtins.str:
        """Next field as text."""
        if self._pos >= len(self._fields):
            raise ProtocolError(f"{self._message}: missing field {name!r} at {self._pos}")
        value = self._fields[self._pos]
        self._pos += 1
        return value

    def opt_str(self, name: builtins.str, default: builtins.str = "") -> builtins.str:
        """Next field as text, or a default when the message ended early (older clients)."""
        if self._pos >= len(self._fields):
            return default
        return self.str(name)

    def int(self, name: builtins.str, default: builtins.int = 0) -> builtins.int:
        """Next field as an integer; empty text gives the default."""
        raw = self.str(name)
        if raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            try:
                as_float = float(raw)
            except ValueError:
                as_float = float("nan")
            if as_float.is_integer():
                return int(as_float)
            raise ProtocolError(
                f"{self._message}: field {name!r} at {self._pos - 1} is not an integer: {raw!r}"
            ) from None

    def float(self, name: builtins.str, default: builtins.float = 0.0) -> builtins.float:
        """Next field as a float; empty text gives the default."""
        raw = self.str(name)
        if raw == "":
            return default
        if raw == "Infinite":
            return float("inf")
        try:
            return float(raw)
        except ValueError:
            raise ProtocolError(
                f"{self._message}: field {name!r} at {self._pos - 1} is not a number: {raw!r}"
            ) from None

    def bool(self, name: builtins.str) -> builtins.bool:
        """Next field as a 0/1 flag (empty is false)."""
        return self.int(name) != 0

    def skip(self, count: builtins.int, name: builtins.str) -> None:
        """Skip fields the simulator does not use."""
        for index in range(count):
            self.str(f"{name}[{index}]")
