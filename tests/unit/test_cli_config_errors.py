"""Every flag and variable of every service, set to garbage: exit status 2, one line on stderr
naming it, never a traceback (issue 15, defect 2).

Each case runs the real entry point, `python -m cryptomon.<service>`, in a clean environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WEBHOOK = "https://discord.com/api/webhooks/1/sEcReT-token"


def run(module: str, args: list[str], env: dict[str, str], cwd: Path,
        timeout: float = 30) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("DISCORD_", "KAFKA_", "ALERTER_", "DASHBOARD_", "BINANCE_", "COINBASE_", "KRAKEN_",
                                  "OKX_", "BYBIT_", "PRODUCER_", "MOCK_", "CRYPTOMON_", "STATE_DIRECTORY",
                                  "CREDENTIALS_DIRECTORY", "LOG_LEVEL", "JOURNAL_STREAM"))}
    clean.update(PYTHONPATH=str(REPO / "services"), **env)
    return subprocess.run([sys.executable, "-m", module, *args], env=clean, cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, check=False)


def assert_one_line_exit_2(res: subprocess.CompletedProcess, names: str) -> None:
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, (res.returncode, res.stderr)
    assert names in lines[0], lines[0]
    assert "sEcReT" not in res.stderr


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    latin1 = tmp_path / "latin1.env"
    latin1.write_bytes(b"LOG_LEVEL=INFO\nMOCK_SYMBOLS=BTC-USD\xe9\n")
    webhook_latin1 = tmp_path / "webhook"
    webhook_latin1.write_bytes(b"https://discord.com/api/webhooks/1/\xe9\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "discord-webhook").write_bytes(b"\xff\xfe")
    bad_json = tmp_path / "script.json"
    bad_json.write_text("[{\"at\": 1, \"do\": \"drop\"")
    not_list = tmp_path / "steps.json"
    not_list.write_text('{"at": 1, "do": "drop"}')
    bad_step = tmp_path / "step.json"
    bad_step.write_text('[{"at": -5, "do": "drop"}]')
    return {"latin1": str(latin1), "webhook_latin1": str(webhook_latin1), "dir": str(tmp_path),
            "creds": str(creds), "bad_json": str(bad_json), "not_list": str(not_list), "bad_step": str(bad_step)}


# (module, args, env, what the line must name); "{key}" is replaced by files[key].
CASES = [
    # producer
    ("cryptomon.producer", ["mock"], {"LOG_LEVEL": "bogus"}, "LOG_LEVEL"),
    ("cryptomon.producer", ["mock"], {"CRYPTOMON_ENV_FILE": "{latin1}"}, "CRYPTOMON_ENV_FILE"),
    ("cryptomon.producer", ["mock"], {"CRYPTOMON_ENV_FILE": "{dir}"}, "CRYPTOMON_ENV_FILE"),
    ("cryptomon.producer", ["binance"], {"PRODUCER_SYMBOLS_CACHE": "/etc/passwd/cache.json"}, "PRODUCER_SYMBOLS_CACHE"),
    ("cryptomon.producer", ["binance"], {"STATE_DIRECTORY": "/etc/passwd"}, "STATE_DIRECTORY"),
    ("cryptomon.producer", ["kraken"], {"KRAKEN_STREAM_URL": "wss://ws.kraken.com:99999/v2"}, "KRAKEN_STREAM_URL"),
    ("cryptomon.producer", ["okx"], {"OKX_REST_URL": "ftp://okx"}, "OKX_REST_URL"),
    ("cryptomon.producer", ["bybit"], {"PRODUCER_STALE_AFTER_S": "soon"}, "PRODUCER_STALE_AFTER_S"),
    ("cryptomon.producer", ["coinbase"], {"PRODUCER_SYMBOLS_REFRESH_S": "-1"}, "PRODUCER_SYMBOLS_REFRESH_S"),
    ("cryptomon.producer", ["mock"], {"MOCK_RATE": "fast"}, "MOCK_RATE"),
    ("cryptomon.producer", ["mock"], {"MOCK_SEED": "1.5"}, "MOCK_SEED"),
    ("cryptomon.producer", ["mock"], {"KAFKA_SSL_CA_LOCATION": "/nonexistent.pem", "KAFKA_SECURITY_PROTOCOL": "SSL"},
     "KAFKA_SSL_CA_LOCATION"),
    ("cryptomon.producer", ["nasdaq"], {}, "invalid choice: 'nasdaq'"),
    ("cryptomon.producer", ["mock", "--verbose"], {}, "--verbose"),
    # alerter
    ("cryptomon.alerter", ["--log-level", "bogus", "--stdin"], {}, "--log-level"),
    ("cryptomon.alerter", ["--stdin"], {"ALERTER_LOG_LEVEL": "loud"}, "ALERTER_LOG_LEVEL"),
    ("cryptomon.alerter", ["--stdin"], {"ALERTER_STATE_FILE": "/etc/passwd/state.json"}, "ALERTER_STATE_FILE"),
    ("cryptomon.alerter", ["--stdin"], {"ALERTER_STATE_FILE": "{dir}"}, "ALERTER_STATE_FILE"),
    ("cryptomon.alerter", ["--stdin"], {"STATE_DIRECTORY": "/etc/passwd"}, "STATE_DIRECTORY"),
    ("cryptomon.alerter", ["--stdin"], {"DISCORD_WEBHOOK_FILE": "{webhook_latin1}"}, "DISCORD_WEBHOOK_FILE"),
    ("cryptomon.alerter", ["--stdin"], {"DISCORD_WEBHOOK_FILE": "{dir}"}, "DISCORD_WEBHOOK_FILE"),
    ("cryptomon.alerter", ["--stdin"], {"CREDENTIALS_DIRECTORY": "{creds}"}, "DISCORD_WEBHOOK_FILE"),
    ("cryptomon.alerter", ["--stdin"], {"DISCORD_WEBHOOK_URL": "https://discord.com:99999/api/webhooks/1/sEcReT"},
     "DISCORD_WEBHOOK_URL"),
    ("cryptomon.alerter", ["--stdin"], {"ALERTER_DEDUPE_SIZE": "many"}, "ALERTER_DEDUPE_SIZE"),
    ("cryptomon.alerter", ["--stdin"], {"ALERTER_MAX_BACKOFF_S": "1.5"}, "ALERTER_MAX_BACKOFF_S"),
    ("cryptomon.alerter", ["--stdin"], {"ALERTER_MAX_ALERT_AGE_S": "-1"}, "ALERTER_MAX_ALERT_AGE_S"),
    ("cryptomon.alerter", ["--stdin"], {"ALERTER_OFFSET_RESET": "middle"}, "ALERTER_OFFSET_RESET"),
    ("cryptomon.alerter", ["--stdin"], {"KAFKA_BOOTSTRAP_SERVERS": "host:99999"}, "KAFKA_BOOTSTRAP_SERVERS"),
    ("cryptomon.alerter", ["--stdin"], {"KAFKA_PASSWORD_FILE": "{webhook_latin1}", "KAFKA_USERNAME": "a"},
     "KAFKA_PASSWORD_FILE"),
    ("cryptomon.alerter", ["send-test", "--timeout", "abc"], {"DISCORD_WEBHOOK_URL": WEBHOOK}, "--timeout"),
    ("cryptomon.alerter", ["send-test", "--timeout", "inf"], {"DISCORD_WEBHOOK_URL": WEBHOOK}, "--timeout"),
    ("cryptomon.alerter", ["send-test", "--timeout", "-1"], {"DISCORD_WEBHOOK_URL": WEBHOOK}, "--timeout"),
    ("cryptomon.alerter", ["sendtest"], {}, "sendtest"),
    # dashboard (nothing is started: every case fails before Streamlit)
    ("cryptomon.dashboard", [], {"DASHBOARD_PORT": "abc"}, "DASHBOARD_PORT"),
    ("cryptomon.dashboard", [], {"DASHBOARD_PORT": "99999"}, "DASHBOARD_PORT"),
    ("cryptomon.dashboard", ["--port", "eighty"], {}, "--port"),
    ("cryptomon.dashboard", ["--port", "0"], {}, "--port"),
    ("cryptomon.dashboard", ["--address", "not a host"], {}, "--address"),
    ("cryptomon.dashboard", [], {"DASHBOARD_ADDRESS": "bad_host!"}, "DASHBOARD_ADDRESS"),
    ("cryptomon.dashboard", [], {"DASHBOARD_REFRESH_S": "nan"}, "DASHBOARD_REFRESH_S"),
    ("cryptomon.dashboard", [], {"DASHBOARD_REFRESH_S": "0.1"}, "DASHBOARD_REFRESH_S"),
    ("cryptomon.dashboard", [], {"DASHBOARD_SPREAD_EXCHANGES": "binance"}, "DASHBOARD_SPREAD_EXCHANGES"),
    ("cryptomon.dashboard", [], {"DASHBOARD_SPREAD_EXCHANGES": "okx,okx"}, "DASHBOARD_SPREAD_EXCHANGES"),
    ("cryptomon.dashboard", [], {"LOG_LEVEL": "chatty"}, "LOG_LEVEL"),
    ("cryptomon.dashboard", [], {"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
    # replay servers (an exchange stand-in, the Discord stand-in)
    ("cryptomon.replay", ["binance", "--port", "99999"], {}, "--port"),
    ("cryptomon.replay", ["binance", "--port", "-1"], {}, "--port"),
    ("cryptomon.replay", ["binance", "--rate", "nan"], {}, "--rate"),
    ("cryptomon.replay", ["binance", "--rate", "-2"], {}, "--rate"),
    ("cryptomon.replay", ["binance", "--keep", "0"], {}, "--keep"),
    ("cryptomon.replay", ["binance", "--seed", "x"], {}, "--seed"),
    ("cryptomon.replay", ["binance", "--ping-interval", "0"], {}, "--ping-interval"),
    ("cryptomon.replay", ["binance", "--max-age", "inf"], {}, "--max-age"),
    ("cryptomon.replay", ["binance", "--host", "no such host!"], {}, "--host"),
    ("cryptomon.replay", ["binance", "--host", "203.0.113.9", "--port", "0"], {}, "--host/--port"),
    ("cryptomon.replay", ["binance", "--port", "0", "--script", "/nonexistent.json"], {}, "--script"),
    ("cryptomon.replay", ["binance", "--port", "0", "--script", "{bad_json}"], {}, "--script"),
    ("cryptomon.replay", ["binance", "--port", "0", "--script", "{not_list}"], {}, "--script"),
    ("cryptomon.replay", ["binance", "--port", "0", "--script", "{bad_step}"], {}, "--script"),
    ("cryptomon.replay.discord", ["--port", "65536"], {}, "--port"),
    ("cryptomon.replay.discord", ["--rate-limit", "0"], {}, "--rate-limit"),
    ("cryptomon.replay.discord", ["--per", "-1"], {}, "--per"),
    ("cryptomon.replay.discord", ["--host", "203.0.113.9", "--port", "0"], {}, "--host/--port"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("module, args, env, names", CASES,
                         ids=[f"{c[0].split('.', 1)[1]}-{'-'.join(c[1])}-{','.join(c[2])}" for c in CASES])
def test_bad_setting_is_one_line_and_exit_2(module, args, env, names, files, tmp_path) -> None:
    args = [a.format(**files) for a in args]
    env = {k: v.format(**files) for k, v in env.items()}
    assert_one_line_exit_2(run(module, args, env, tmp_path), names)


def test_the_producer_reads_its_log_level_from_the_env_file_too(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("LOG_LEVEL=verbose\n")
    assert_one_line_exit_2(run("cryptomon.producer", ["mock"], {}, tmp_path), "LOG_LEVEL")


def test_the_state_file_check_does_not_reject_a_new_directory(tmp_path: Path) -> None:
    """A state file under a directory that does not exist yet is fine: it is created at start."""
    state = tmp_path / "new" / "dir" / "sent-alert-ids"
    res = run("cryptomon.alerter", ["--stdin"], {"ALERTER_STATE_FILE": str(state)}, tmp_path)
    assert res.returncode == 0, res.stderr
    assert state.parent.is_dir()
