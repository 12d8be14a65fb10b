"""Tiny DER helpers: TLV framing, so protection covers the exact bytes that were received.

The protection of a CMP message is computed over ``ProtectedPart`` = SEQUENCE { header, body }
as the sender encoded them. Re-encoding a decoded message could differ from what was signed
(a non-DER sender), so the received header and body are sliced out of the message as bytes.
"""

from __future__ import annotations


def length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + length(len(content)) + content


def split(data: bytes) -> list[bytes]:
    """The complete TLVs inside ``data`` (one level), as raw byte strings."""
    out, i = [], 0
    while i < len(data):
        start = i
        i += 1  # single-byte tags only: every tag in a CMP message at this level is low-numbered
        if i >= len(data):
            raise ValueError("truncated DER")
        first = data[i]
        i += 1
        if first & 0x80:
            count = first & 0x7F
            if count == 0 or count > 4 or i + count > len(data):
                raise ValueError("bad DER length")
            size = int.from_bytes(data[i:i + count], "big")
            i += count
        else:
            size = first
        if i + size > len(data):
            raise ValueError("truncated DER")
        i += size
        out.append(data[start:i])
    return out


def content(element: bytes) -> bytes:
    """The value part of one TLV."""
    first = element[1]
    offset = 2 + (first & 0x7F if first & 0x80 else 0)
    return element[offset:]


def protected_part(message_der: bytes) -> bytes:
    """``ProtectedPart`` DER of a received PKIMessage: SEQUENCE { its header, its body } as sent."""
    outer = split(message_der)
    if len(outer) != 1 or outer[0][0] != 0x30:
        raise ValueError("not a DER SEQUENCE")
    parts = split(content(outer[0]))
    if len(parts) < 2:
        raise ValueError("PKIMessage without header and body")
    return tlv(0x30, parts[0] + parts[1])
