"""Kafka connection settings shared by every service, parsed once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the variable and the problem."""


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = "localhost:9092"
    trades_topic: str = "trades.raw"
    alerts_topic: str = "signals.alerts"
    arbitrage_topic: str = "signals.arbitrage"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSettings:
        env = os.environ if env is None else env

        def get(name: str, default: str | None = None) -> str | None:
            value = env.get(name, "").strip()
            return value or default

        bootstrap = get("KAFKA_BOOTSTRAP_SERVERS", cls.bootstrap_servers)
        assert bootstrap is not None
        for server in bootstrap.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(
                    f"KAFKA_BOOTSTRAP_SERVERS: {server.strip()!r} is not host:port"
                )
        protocol = (get("KAFKA_SECURITY_PROTOCOL", "") or "").upper()
        username, password = get("KAFKA_USERNAME"), get("KAFKA_PASSWORD")
        mechanism = (get("KAFKA_SASL_MECHANISM", "") or "").upper() or None
        if not protocol:
            protocol = "SASL_SSL" if username else "PLAINTEXT"
        if protocol not in _PROTOCOLS:
            raise ConfigError(
                f"KAFKA_SECURITY_PROTOCOL: {protocol!r} is not one of {', '.join(_PROTOCOLS)}"
            )
        if username and not password:
            raise ConfigError("KAFKA_PASSWORD: required when KAFKA_USERNAME is set")
        if password and not username:
            raise ConfigError("KAFKA_USERNAME: required when KAFKA_PASSWORD is set")
        if protocol.startswith("SASL_"):
            if not username:
                raise ConfigError(f"KAFKA_USERNAME: required with KAFKA_SECURITY_PROTOCOL={protocol}")
            mechanism = mechanism or "SCRAM-SHA-512"
            if mechanism not in _MECHANISMS:
                raise ConfigError(
                    f"KAFKA_SASL_MECHANISM: {mechanism!r} is not one of {', '.join(_MECHANISMS)}"
                )
        elif username:
            raise ConfigError(
                f"KAFKA_USERNAME is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use SASL"
            )
        topics = {}
        for var, field in (
            ("KAFKA_TRADES_TOPIC", "trades_topic"),
            ("KAFKA_ALERTS_TOPIC", "alerts_topic"),
            ("KAFKA_ARBITRAGE_TOPIC", "arbitrage_topic"),
        ):
            name = get(var, getattr(cls, field))
            assert name is not None
            if not all(c.isalnum() or c in "._-" for c in name) or len(name) > 249:
                raise ConfigError(f"{var}: {name!r} is not a valid Kafka topic name")
            topics[field] = name
        return cls(
            bootstrap_servers=bootstrap,
            security_protocol=protocol,
            sasl_mechanism=mechanism if protocol.startswith("SASL_") else None,
            username=username,
            password=password,
            **topics,
        )

    def client_config(self) -> dict[str, str]:
        """librdkafka settings common to producers, consumers and admin clients."""
        conf = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.username or ""
            conf["sasl.password"] = self.password or ""
        return conf

    def redacted(self) -> str:
        """One line for start-up logs, without the password."""
        auth = f" sasl={self.sasl_mechanism} user={self.username}" if self.sasl_mechanism else ""
        return f"bootstrap={self.bootstrap_servers} protocol={self.security_protocol}{auth}"
