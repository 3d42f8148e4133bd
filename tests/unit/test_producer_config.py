"""Configuration from env and .env; invalid values exit non-zero with one clear line."""

from __future__ import annotations

import pytest
from cryptomon.kafka_settings import ConfigError
from cryptomon.producer import cli
from cryptomon.producer.config import ProducerConfig, binance_symbol, load_env


def test_defaults():
    c = ProducerConfig.from_env("binance", {})
    assert c.binance_symbols == {"BTCUSDT": "BTC-USDT", "ETHUSDT": "ETH-USDT", "BNBUSDT": "BNB-USDT"}
    assert c.kafka.bootstrap_servers == "localhost:9092"
    assert c.kafka.trades_topic == "trades.raw"
    assert c.binance_url.startswith("wss://") and c.coinbase_url.startswith("wss://")
    assert c.coinbase_products == ("BTC-USD", "ETH-USD")


def test_all_documented_variables_are_read():
    env = {
        "BINANCE_SYMBOLS": "btcusdt, ETH-BTC", "BINANCE_STREAM_URL": "ws://127.0.0.1:9443/stream",
        "COINBASE_PRODUCTS": "btc-usd", "COINBASE_STREAM_URL": "ws://127.0.0.1:9444",
        "KAFKA_BOOTSTRAP_SERVERS": "k1:9093,k2:9093", "KAFKA_TRADES_TOPIC": "t.raw",
        "KAFKA_ALERTS_TOPIC": "a.alerts", "KAFKA_USERNAME": "producer", "KAFKA_PASSWORD": "s3cret",
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
    }
    c = ProducerConfig.from_env("coinbase", env)
    assert c.binance_symbols == {"BTCUSDT": "BTC-USDT", "ETHBTC": "ETH-BTC"}
    assert c.coinbase_products == ("BTC-USD",)
    assert c.binance_url == env["BINANCE_STREAM_URL"] and c.coinbase_url == env["COINBASE_STREAM_URL"]
    k = c.kafka
    assert (k.bootstrap_servers, k.trades_topic, k.alerts_topic) == ("k1:9093,k2:9093", "t.raw", "a.alerts")
    assert (k.security_protocol, k.sasl_mechanism, k.username, k.password) == (
        "SASL_PLAINTEXT", "SCRAM-SHA-256", "producer", "s3cret")


@pytest.mark.parametrize("text, expected", [
    ("BTCUSDT", ("BTCUSDT", "BTC-USDT")), ("bnbbtc", ("BNBBTC", "BNB-BTC")),
    ("ETH/USDC", ("ETHUSDC", "ETH-USDC")), ("SOLFDUSD", ("SOLFDUSD", "SOL-FDUSD")),
])
def test_binance_symbol_forms(text, expected):
    assert binance_symbol(text) == expected


@pytest.mark.parametrize("env, variable", [
    ({"BINANCE_SYMBOLS": "BTCXYZ"}, "BINANCE_SYMBOLS"),
    ({"BINANCE_SYMBOLS": "BTC-"}, "BINANCE_SYMBOLS"),
    ({"BINANCE_SYMBOLS": "BTC USDT"}, "BINANCE_SYMBOLS"),
    ({"COINBASE_PRODUCTS": "BTCUSD"}, "COINBASE_PRODUCTS"),
    ({"BINANCE_STREAM_URL": "http://x/stream"}, "BINANCE_STREAM_URL"),
    ({"COINBASE_STREAM_URL": "wss://host:99999"}, "COINBASE_STREAM_URL"),
    ({"COINBASE_STREAM_URL": "not a url"}, "COINBASE_STREAM_URL"),
    ({"KAFKA_USERNAME": "u"}, "KAFKA_PASSWORD"),
    ({"KAFKA_BOOTSTRAP_SERVERS": "nohostport"}, "KAFKA_BOOTSTRAP_SERVERS"),
    ({"MOCK_RATE": "fast"}, "MOCK_RATE"),
    ({"BINANCE_STREAM_TYPE": "bookTicker"}, "BINANCE_STREAM_TYPE"),
])
def test_invalid_values_name_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        ProducerConfig.from_env("binance", env)


def test_cli_exits_non_zero_with_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KAFKA_USERNAME", "producer")
    monkeypatch.delenv("KAFKA_PASSWORD", raising=False)
    assert cli.main(["binance"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "KAFKA_PASSWORD" in err[0]


def test_cli_rejects_unknown_exchange(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["kraken"])
    assert exc.value.code != 0


def test_env_file_real_env_wins(tmp_path):
    (tmp_path / ".env").write_text(
        "# local run\nexport BINANCE_SYMBOLS=ETHUSDT\nKAFKA_TRADES_TOPIC='from.file'\n\nMOCK_RATE=\"9\"\n")
    env = load_env({"KAFKA_TRADES_TOPIC": "from.env"}, cwd=tmp_path)
    c = ProducerConfig.from_env("mock", env)
    assert c.binance_symbols == {"ETHUSDT": "ETH-USDT"}
    assert c.kafka.trades_topic == "from.env"
    assert c.mock.rate == 9.0


def test_env_file_from_variable_and_errors(tmp_path):
    f = tmp_path / "producer.env"
    f.write_text("COINBASE_PRODUCTS=SOL-USD\n")
    assert load_env({"CRYPTOMON_ENV_FILE": str(f)}, cwd=tmp_path)["COINBASE_PRODUCTS"] == "SOL-USD"
    with pytest.raises(ConfigError, match="CRYPTOMON_ENV_FILE"):
        load_env({"CRYPTOMON_ENV_FILE": str(tmp_path / "missing.env")})
    f.write_text("this is not an assignment\n")
    with pytest.raises(ConfigError, match="producer.env:1"):
        load_env({"CRYPTOMON_ENV_FILE": str(f)})
