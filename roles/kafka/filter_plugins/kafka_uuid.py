"""Filters for Kafka's UUIDs (16 bytes, URL-safe base64 without padding)."""

from __future__ import annotations

import base64
import hashlib
import uuid


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def kafka_uuid_from(seed: str) -> str:
    """A stable Kafka UUID derived from a seed (used for KIP-853 directory ids)."""
    raw = bytearray(hashlib.sha256(str(seed).encode()).digest()[:16])
    raw[0] |= 0x40  # never one of Kafka's reserved ids (all-zero, ONE_UUID, ...)
    return _encode(bytes(raw))


def kafka_random_uuid(_: object = None) -> str:
    """A fresh random Kafka UUID (cluster id for a brand-new cluster)."""
    raw = bytearray(uuid.uuid4().bytes)
    raw[0] |= 0x40
    return _encode(bytes(raw))


class FilterModule:
    def filters(self) -> dict:
        return {"kafka_uuid_from": kafka_uuid_from, "kafka_random_uuid": kafka_random_uuid}
