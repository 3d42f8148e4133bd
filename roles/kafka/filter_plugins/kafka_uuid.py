"""Filters for Kafka's UUIDs (16 bytes, URL-safe base64 without padding)."""

from __future__ import annotations

import base64
import hashlib
import uuid


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _safe(raw: bytes) -> bytes:
    """First byte in 0x40..0x7f: never a reserved id (all-zero, ONE_UUID), and the encoding never
    starts with '-' (Kafka avoids those too: command lines would read them as options)."""
    return bytes([(raw[0] & 0x7F) | 0x40]) + raw[1:]


def kafka_uuid_from(seed: str) -> str:
    """A stable Kafka UUID derived from a seed (used for KIP-853 directory ids)."""
    return _encode(_safe(hashlib.sha256(str(seed).encode()).digest()[:16]))


def kafka_random_uuid(_: object = None) -> str:
    """A fresh random Kafka UUID (cluster id for a brand-new cluster)."""
    return _encode(_safe(uuid.uuid4().bytes))


class FilterModule:
    def filters(self) -> dict:
        return {"kafka_uuid_from": kafka_uuid_from, "kafka_random_uuid": kafka_random_uuid}
