"""The registry is the one place naming exchanges: the CLI, the config, the replay servers and
the deployment (`python -m cryptomon.producer.registry --json`) all read it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptomon.producer import registry
from cryptomon.producer.base import WebSocketAdapter
from cryptomon.producer.config import ProducerConfig
from cryptomon.replay import ReplayServer

SERVICES = Path(__file__).resolve().parents[2] / "services"


def test_json_listing_for_ansible():
    out = subprocess.run([sys.executable, "-m", "cryptomon.producer.registry", "--json"], cwd=SERVICES,
                         capture_output=True, text=True, check=True).stdout
    entries = json.loads(out)
    assert [e["name"] for e in entries] == ["binance", "coinbase", "kraken", "okx", "bybit", "mock"]
    kraken = next(e for e in entries if e["name"] == "kraken")
    assert kraken["symbols_var"] == "KRAKEN_SYMBOLS" and kraken["stream_url_var"] == "KRAKEN_STREAM_URL"
    assert kraken["default_stream_url"] == "wss://ws.kraken.com/v2" and kraken["replay_default_port"] == 9445
    assert kraken["replay_stream_path"] == "/v2" and kraken["rest_url_var"] == "KRAKEN_REST_URL"
    mock = entries[-1]
    assert mock["kind"] == "mock" and mock["imitates"] == ["binance", "coinbase", "kraken", "okx", "bybit"]
    real = json.loads(subprocess.run([sys.executable, "-m", "cryptomon.producer.registry", "--json", "--real"],
                                     cwd=SERVICES, capture_output=True, text=True, check=True).stdout)
    assert [e["name"] for e in real] == ["binance", "coinbase", "kraken", "okx", "bybit"]


@pytest.mark.parametrize("name", registry.exchange_names(real_only=True))
def test_every_exchange_is_complete(name):
    cls = registry.adapter_class(name)
    assert issubclass(cls, WebSocketAdapter) and cls.exchange == name
    replay = registry.replay_class(name)
    assert issubclass(replay, ReplayServer) and replay.exchange == name and replay.rest_paths
    assert cls.listing_path.split("?")[0] in replay.rest_paths
    ports = [registry.adapter_class(n).replay_port for n in registry.exchange_names(real_only=True)]
    assert len(set(ports)) == len(ports)
    # its own variables, with working defaults
    assert ProducerConfig.from_env(name, {}).feed.symbols.markets
    assert cls.limits.default_streams_per_connection <= cls.limits.streams_per_connection


def test_unknown_names():
    with pytest.raises(KeyError, match="unknown exchange 'nasdaq'"):
        registry.adapter_class("nasdaq")
    with pytest.raises(KeyError, match="no replay server"):
        registry.replay_class("mock")
