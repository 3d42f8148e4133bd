"""The command line: --stdin, send-test, log-only mode, exit codes, no secret in any output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptomon.replay.discord import FakeDiscord

REPO = Path(__file__).resolve().parents[2]
TOKEN = "cli-SECRET-token-9a8b7c"


def run_cli(args: list[str], env: dict[str, str], stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "KAFKA_", "ALERTER_"))}
    full_env.update(PYTHONPATH=str(REPO / "services"), **env)
    return subprocess.run([sys.executable, "-m", "cryptomon.alerter", *args], check=False, input=stdin, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def fake():
    with FakeDiscord(token=TOKEN) as server:
        yield server


def line(alert_id: str, **extra: object) -> str:
    return json.dumps({"alert_id": alert_id, "type": "volume_anomaly", "exchange": "binance",
                       "symbol": "BTC-USDT", "volume": "30", **extra})


def test_stdin_mode_skips_malformed_and_duplicates(fake: FakeDiscord) -> None:
    stdin = "\n".join([line("s1"), "{broken json", "", line("s2"), line("s1"), line("s3")]) + "\n"
    res = run_cli(["--stdin", "--log-level", "DEBUG"], {"DISCORD_WEBHOOK_URL": fake.webhook_url()}, stdin)
    assert res.returncode == 0, res.stderr
    posted = [m["embeds"][0]["footer"]["text"].rsplit(" ", 1)[-1] for m in fake.snapshot()]
    assert posted == ["s1", "s2", "s3"]
    assert "malformed alert at stdin line 2" in res.stderr
    assert "duplicate alert s1" in res.stderr
    assert TOKEN not in res.stderr + res.stdout


def test_run_subcommand_accepts_stdin_too(fake: FakeDiscord) -> None:
    res = run_cli(["run", "--stdin"], {"DISCORD_WEBHOOK_URL": fake.webhook_url()}, line("r1") + "\n")
    assert res.returncode == 0, res.stderr
    assert len(fake.snapshot()) == 1


def test_log_only_without_webhook() -> None:
    res = run_cli(["--stdin"], {}, line("n1", volume="12.5") + "\n")
    assert res.returncode == 0, res.stderr
    assert "log-only mode" in res.stderr and "Volume=12.5" in res.stderr


def test_send_test_posts_one_message(fake: FakeDiscord, tmp_path: Path) -> None:
    secret = tmp_path / "webhook"
    secret.write_text(fake.webhook_url() + "\n")
    res = run_cli(["send-test"], {"DISCORD_WEBHOOK_FILE": str(secret)})
    assert res.returncode == 0, res.stderr
    assert "accepted the test message" in res.stderr
    [message] = fake.snapshot()
    assert message["embeds"][0]["title"] == "cryptomon test message"
    assert TOKEN not in res.stderr + res.stdout


def test_send_test_unknown_webhook(fake: FakeDiscord) -> None:
    fake.delete_webhook("1")
    res = run_cli(["send-test"], {"DISCORD_WEBHOOK_URL": fake.webhook_url()})
    assert res.returncode == 78
    assert "HTTP 404 code 10015" in res.stderr and "does not exist" in res.stderr
    assert TOKEN not in res.stderr + res.stdout


def test_send_test_without_webhook_is_a_config_error() -> None:
    res = run_cli(["send-test"], {})
    assert res.returncode == 2 and "no webhook configured" in res.stderr


def test_dead_webhook_in_stdin_mode_stops_after_one_request(fake: FakeDiscord) -> None:
    bad = fake.webhook_url(token="wrong-SECRET-token")
    stdin = "".join(line(f"w{i}") + "\n" for i in range(5))
    res = run_cli(["--stdin"], {"DISCORD_WEBHOOK_URL": bad}, stdin)
    assert res.returncode == 78
    assert fake.stats_snapshot()["requests_total"] == 1
    assert res.stderr.count("webhook unusable") == 1 and "HTTP 401" in res.stderr
    assert "wrong-SECRET-token" not in res.stderr


def test_config_error_exit_code_and_no_secret() -> None:
    res = run_cli(["--stdin"], {"DISCORD_WEBHOOK_URL": "https://discord.com/sEcReT"})
    assert res.returncode == 2
    assert "configuration error: DISCORD_WEBHOOK_URL" in res.stderr and "sEcReT" not in res.stderr
    assert "Traceback" not in res.stderr


def test_stale_alerts_are_skipped_by_default_and_counted() -> None:
    """Issue 15, defect 7: a new group starts at `earliest`; history older than 600 s is not re-posted."""
    old = line("old", window_end_ms=1_700_000_010_000)
    res = run_cli(["--stdin"], {}, old + "\n" + line("new") + "\n")
    assert res.returncode == 0, res.stderr
    assert "skipping stale alert old at stdin line 1" in res.stderr
    assert "ALERT (log-only, no webhook) new" in res.stderr and "ALERT (log-only, no webhook) old" not in res.stderr
    assert "stale=1" in res.stderr and "logged=1" in res.stderr
    res = run_cli(["--stdin"], {"ALERTER_MAX_ALERT_AGE_S": "0"}, old + "\n")
    assert "stale=0" in res.stderr and "logged=1" in res.stderr


def test_webhook_with_invalid_port_fails_at_start() -> None:
    """Issue 15, defect 3: it used to pass validation and fail on the first post."""
    res = run_cli(["--stdin"], {"DISCORD_WEBHOOK_URL": "https://discord.com:99999/api/webhooks/1/sEcReT"},
                  line("p1") + "\n")
    assert res.returncode == 2
    [err] = res.stderr.strip().splitlines()
    assert "DISCORD_WEBHOOK_URL" in err and "sEcReT" not in err and "Traceback" not in res.stderr
