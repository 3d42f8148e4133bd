"""Configuration from env and .env; invalid values exit 2 with one clear line naming the variable."""

from __future__ import annotations

import pytest
from cryptomon.kafka_settings import ConfigError
from cryptomon.producer import cli
from cryptomon.producer.config import ProducerConfig, load_env
from cryptomon.producer.registry import adapter_class, exchange_names
from cryptomon.producer.symbols import Market, split_concatenated

REAL = exchange_names(real_only=True)


def test_defaults():
    c = ProducerConfig.from_env("binance", {})
    assert [m.raw for m in c.feed.symbols.markets] == ["BTCUSDT", "ETHUSDT", "BNBUSDT"]
    assert c.feed.symbols.markets[0] == Market("BTCUSDT", "BTC-USDT")
    assert c.feed.stream_type == "trade" and c.feed.streams_per_connection == 200
    assert c.kafka.bootstrap_servers == "localhost:9092"
    assert c.kafka.trades_topic == "trades.raw"
    assert c.feed.stream_url.startswith("wss://") and c.feed.rest_url == "https://api.binance.com"
    assert c.feed.symbols_cache is None  # no StateDirectory, no PRODUCER_SYMBOLS_CACHE
    assert [m.raw for m in ProducerConfig.from_env("coinbase", {}).feed.symbols.markets] == ["BTC-USD", "ETH-USD"]


@pytest.mark.parametrize("exchange", REAL)
def test_every_exchange_reads_its_own_variables(exchange, tmp_path):
    cls = adapter_class(exchange)
    env = {cls.symbols_var: cls.default_symbols.split(",")[0] + ",*USD*",
           cls.url_var: "ws://127.0.0.1:9999/x", cls.rest_var: "http://127.0.0.1:9999/",
           "PRODUCER_STREAMS_PER_CONNECTION": "7", "PRODUCER_SYMBOLS_REFRESH_S": "3600",
           "STATE_DIRECTORY": str(tmp_path)}
    feed = ProducerConfig.from_env(exchange, env).feed
    assert feed.stream_url == "ws://127.0.0.1:9999/x" and feed.rest_url == "http://127.0.0.1:9999"
    assert feed.symbols.patterns == ("*USD*",) and len(feed.symbols.markets) == 1
    assert feed.streams_per_connection == 7 and feed.refresh_s == 3600
    assert feed.symbols_cache == tmp_path / f"symbols-{exchange}.json"


def test_all_documented_variables_are_read():
    env = {
        "COINBASE_PRODUCTS": "btc-usd", "COINBASE_STREAM_URL": "ws://127.0.0.1:9444",
        "KAFKA_BOOTSTRAP_SERVERS": "k1:9093,k2:9093", "KAFKA_TRADES_TOPIC": "t.raw",
        "KAFKA_ALERTS_TOPIC": "a.alerts", "KAFKA_USERNAME": "producer", "KAFKA_PASSWORD": "s3cret",
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "PRODUCER_STALE_AFTER_S": "5", "PRODUCER_SYMBOLS_CACHE": "/var/lib/x/cb.json",
    }
    c = ProducerConfig.from_env("coinbase", env)
    assert c.feed.symbols.markets == (Market("BTC-USD", "BTC-USD"),)
    assert c.feed.stream_url == env["COINBASE_STREAM_URL"] and c.stale_after_s == 5
    assert str(c.feed.symbols_cache) == "/var/lib/x/cb.json"
    k = c.kafka
    assert (k.bootstrap_servers, k.trades_topic, k.alerts_topic) == ("k1:9093,k2:9093", "t.raw", "a.alerts")
    assert (k.security_protocol, k.sasl_mechanism, k.username, k.password) == (
        "SASL_PLAINTEXT", "SCRAM-SHA-256", "producer", "s3cret")


@pytest.mark.parametrize("exchange, text, expected", [
    ("binance", "BTCUSDT", Market("BTCUSDT", "BTC-USDT")), ("binance", "bnbbtc", Market("BNBBTC", "BNB-BTC")),
    ("binance", "ETH/USDC", Market("ETHUSDC", "ETH-USDC")), ("binance", "SOLFDUSD", Market("SOLFDUSD", "SOL-FDUSD")),
    ("bybit", "btc-usdt", Market("BTCUSDT", "BTC-USDT")),
    ("kraken", "XBT/USD", Market("BTC/USD", "BTC-USD")), ("kraken", "xdg-eur", Market("DOGE/EUR", "DOGE-EUR")),
    ("kraken", "ETH/USDT", Market("ETH/USDT", "ETH-USDT")),
    ("okx", "btc-usdt", Market("BTC-USDT", "BTC-USDT")), ("okx", "ETH/USDC", Market("ETH-USDC", "ETH-USDC")),
    ("coinbase", "eth-usd", Market("ETH-USD", "ETH-USD")),
])
def test_symbol_forms_normalize_to_base_quote(exchange, text, expected):
    assert adapter_class(exchange).parse_symbol(text) == expected


def test_concatenated_symbols_split_on_known_quotes():
    assert split_concatenated("1000SATSUSDT") == Market("1000SATSUSDT", "1000SATS-USDT")
    with pytest.raises(ValueError, match="no known quote"):
        split_concatenated("BTCXYZ")


@pytest.mark.parametrize("exchange, env, variable", [
    ("binance", {"BINANCE_SYMBOLS": "BTCXYZ"}, "BINANCE_SYMBOLS"),
    ("binance", {"BINANCE_SYMBOLS": "BTC-"}, "BINANCE_SYMBOLS"),
    ("binance", {"BINANCE_SYMBOLS": "BTC USDT"}, "BINANCE_SYMBOLS"),
    ("binance", {"BINANCE_SYMBOLS": "*US$"}, "BINANCE_SYMBOLS"),
    ("binance", {"BINANCE_SYMBOLS": ", ,"}, "BINANCE_SYMBOLS"),
    ("coinbase", {"COINBASE_PRODUCTS": "BTCUSD"}, "COINBASE_PRODUCTS"),
    ("kraken", {"KRAKEN_SYMBOLS": "XBTUSD"}, "KRAKEN_SYMBOLS"),
    ("binance", {"BINANCE_STREAM_URL": "http://x/stream"}, "BINANCE_STREAM_URL"),
    ("coinbase", {"COINBASE_STREAM_URL": "wss://host:99999"}, "COINBASE_STREAM_URL"),
    ("coinbase", {"COINBASE_STREAM_URL": "not a url"}, "COINBASE_STREAM_URL"),
    ("okx", {"OKX_REST_URL": "ftp://x"}, "OKX_REST_URL"),
    ("bybit", {"BYBIT_REST_URL": "https://host:0x50"}, "BYBIT_REST_URL"),
    ("binance", {"KAFKA_USERNAME": "u"}, "KAFKA_PASSWORD"),
    ("binance", {"KAFKA_BOOTSTRAP_SERVERS": "nohostport"}, "KAFKA_BOOTSTRAP_SERVERS"),
    ("mock", {"MOCK_RATE": "fast"}, "MOCK_RATE"),
    ("mock", {"MOCK_EXCHANGES": "binance,nasdaq"}, "MOCK_EXCHANGES"),
    ("mock", {"MOCK_SEED": "1.5"}, "MOCK_SEED"),
    ("binance", {"BINANCE_STREAM_TYPE": "bookTicker"}, "BINANCE_STREAM_TYPE"),
    ("binance", {"PRODUCER_STREAMS_PER_CONNECTION": "1025"}, "PRODUCER_STREAMS_PER_CONNECTION"),
    ("bybit", {"PRODUCER_STREAMS_PER_CONNECTION": "0"}, "PRODUCER_STREAMS_PER_CONNECTION"),
    ("binance", {"PRODUCER_SYMBOLS_REFRESH_S": "-1"}, "PRODUCER_SYMBOLS_REFRESH_S"),
    ("binance", {"PRODUCER_STALE_AFTER_S": "inf"}, "PRODUCER_STALE_AFTER_S"),
    ("binance", {"PRODUCER_BACKOFF_INITIAL_S": "5", "PRODUCER_BACKOFF_MAX_S": "1"}, "PRODUCER_BACKOFF_MAX_S"),
])
def test_invalid_values_name_the_variable(exchange, env, variable):
    with pytest.raises(ConfigError, match=variable):
        ProducerConfig.from_env(exchange, env)


@pytest.mark.parametrize("exchange", REAL)
def test_set_but_empty_symbol_list_is_an_error_unset_is_the_default(exchange):
    """Issue 15, defect 4: BINANCE_SYMBOLS="" used to mean the default list, silently."""
    var = adapter_class(exchange).symbols_var
    for empty in ("", "   "):
        with pytest.raises(ConfigError, match=f"{var}: set but empty"):
            ProducerConfig.from_env(exchange, {var: empty})
    assert ProducerConfig.from_env(exchange, {}).feed.symbols.markets  # unset: the default


@pytest.mark.parametrize("variable", ["MOCK_EXCHANGES", "MOCK_SYMBOLS", "PRODUCER_SYMBOLS_CACHE"])
def test_other_set_but_empty_lists_are_errors_too(variable):
    with pytest.raises(ConfigError, match=f"{variable}: set but empty"):
        ProducerConfig.from_env("mock" if variable.startswith("MOCK") else "binance", {variable: ""})


def test_symbol_cache_path_that_is_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="PRODUCER_SYMBOLS_CACHE"):
        ProducerConfig.from_env("binance", {"PRODUCER_SYMBOLS_CACHE": str(tmp_path)})


# Issue 15, defect 2: every variable of the producer, set to garbage, gives exactly one line on
# stderr and exit status 2, never a traceback.
BAD_VALUES = [
    ("BINANCE_SYMBOLS", "BTC USDT"), ("BINANCE_SYMBOLS", ""), ("BINANCE_SYMBOLS", "*é*"),
    ("BINANCE_STREAM_URL", "ws://[::1"), ("BINANCE_STREAM_URL", "ws://h:-1/"), ("BINANCE_STREAM_URL", "ws://"),
    ("BINANCE_REST_URL", "http://[bad"), ("BINANCE_REST_URL", "https://"),
    ("BINANCE_STREAM_TYPE", "depth"), ("PRODUCER_STALE_AFTER_S", "nan"), ("PRODUCER_MAX_CONNECTION_S", "0"),
    ("PRODUCER_BACKOFF_INITIAL_S", "-1"), ("PRODUCER_BACKOFF_MAX_S", "x"), ("PRODUCER_ACK_TIMEOUT_S", "1e999"),
    ("PRODUCER_STATS_INTERVAL_S", ""), ("PRODUCER_STREAMS_PER_CONNECTION", "ten"),
    ("PRODUCER_STREAMS_PER_CONNECTION", "99999999999999999999"), ("PRODUCER_SYMBOLS_REFRESH_S", "0.5"),
    ("PRODUCER_SYMBOLS_CACHE", ""), ("KAFKA_BOOTSTRAP_SERVERS", "a:b:c"), ("KAFKA_SECURITY_PROTOCOL", "TLS"),
    ("CRYPTOMON_ENV_FILE", "/nonexistent.env"),
]


@pytest.mark.timeout(30)  # an accepted value would make the CLI wait for Kafka
@pytest.mark.parametrize("variable, value", BAD_VALUES)
def test_cli_every_bad_variable_one_line_exit_2(variable, value, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in ("BINANCE_SYMBOLS", "KAFKA_USERNAME", "KAFKA_PASSWORD", "CRYPTOMON_ENV_FILE", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, value)
    if variable == "PRODUCER_STATS_INTERVAL_S":  # empty means default for plain numbers: pick garbage
        monkeypatch.setenv(variable, "often")
    assert cli.main(["binance"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert variable in err[0] and "Traceback" not in err[0]


def test_cli_exits_non_zero_with_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KAFKA_USERNAME", "producer")
    monkeypatch.delenv("KAFKA_PASSWORD", raising=False)
    assert cli.main(["binance"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "KAFKA_PASSWORD" in err[0]


def test_cli_rejects_unknown_exchange_with_the_registry_names(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["nasdaq"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nasdaq'" in err
    for name in exchange_names():
        assert name in err
    with pytest.raises(ConfigError, match="'nasdaq' is not one of binance, coinbase, kraken, okx, bybit, mock"):
        ProducerConfig.from_env("nasdaq", {})


def test_env_file_real_env_wins(tmp_path):
    (tmp_path / ".env").write_text(
        "# local run\nexport BINANCE_SYMBOLS=ETHUSDT\nKAFKA_TRADES_TOPIC='from.file'\n\nMOCK_RATE=\"9\"\n")
    env = load_env({"KAFKA_TRADES_TOPIC": "from.env"}, cwd=tmp_path)
    assert ProducerConfig.from_env("binance", env).feed.symbols.markets == (Market("ETHUSDT", "ETH-USDT"),)
    c = ProducerConfig.from_env("mock", env)
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
    f.write_bytes(b"BINANCE_SYMBOLS=BTC\xffUSDT\n")
    with pytest.raises(ConfigError, match="producer.env: not UTF-8"):
        load_env({"CRYPTOMON_ENV_FILE": str(f)})


@pytest.mark.parametrize("exchange", REAL)
@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_every_url_with_an_invalid_port_is_a_config_error(exchange, port):
    """Issue 15, defect 3: a stream or REST URL with a port outside 1-65535 fails at start."""
    spec = adapter_class(exchange)
    for var, url in ((spec.url_var, f"wss://stream.example:{port}/ws"), (spec.rest_var, f"https://api.example:{port}/v1")):
        with pytest.raises(ConfigError, match=f"{var}: .* is not a valid URL"):
            ProducerConfig.from_env(exchange, {var: url})
