"""The normalized trade schema: exact JSON, documented fields, Kafka key, validation."""

from __future__ import annotations

import json

import pytest
from cryptomon.producer.schema import SCHEMA_FIELDS, SchemaError, Trade

T = Trade("binance", "BTC-USDT", "BTCUSDT", "3811478870", "16541.53000000", "0.00120000", "buy",
          1672515782134, 1672515782140)


def test_to_json_is_valid_json_with_exactly_the_documented_fields():
    data = json.loads(T.to_json())
    assert list(data) == list(SCHEMA_FIELDS)
    assert data == {
        "exchange": "binance", "symbol": "BTC-USDT", "raw_symbol": "BTCUSDT", "trade_id": "3811478870",
        "price": "16541.53000000", "size": "0.00120000", "side": "buy",
        "exchange_ts": 1672515782134, "received_ts": 1672515782140,
    }
    assert isinstance(data["price"], str) and isinstance(data["exchange_ts"], int)


def test_from_json_roundtrip_and_key():
    assert Trade.from_json(T.to_json()) == T
    assert T.key() == b"binance:BTC-USDT"


def test_documented_example_is_a_valid_trade():
    # The example in docs/producers.md's schema section must parse with the same code consumers use.
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "producers.md").read_text()
    section = doc.split("## Normalized trade schema", 1)[1]
    example = section.split("```json\n", 1)[1].split("```", 1)[0]
    Trade.from_json(example)


@pytest.mark.parametrize("field, value", [
    ("price", "1e5"), ("price", "-1"), ("price", "0"), ("price", ""), ("size", "1,5"),
    ("price", 1.5), ("side", "BUY"), ("symbol", "BTCUSDT"), ("symbol", "btc-usdt"),
    ("exchange", "Binance"), ("trade_id", 'x"y'), ("raw_symbol", "a b"),
    ("exchange_ts", "1"), ("received_ts", 0),
])
def test_validate_rejects(field, value):
    bad = Trade(**{**T.to_dict(), field: value})
    with pytest.raises(SchemaError):
        bad.validate()


def test_from_json_rejects_extra_or_missing_fields():
    data = json.loads(T.to_json())
    with pytest.raises(SchemaError):
        Trade.from_json(json.dumps({**data, "extra": 1}))
    del data["side"]
    with pytest.raises(SchemaError):
        Trade.from_json(json.dumps(data))
