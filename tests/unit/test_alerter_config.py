"""Configuration parsing and the dedupe state file."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptomon.alerter.config import AlerterConfig, ConfigError, Webhook
from cryptomon.alerter.dedupe import SentIds

URL = "https://discord.com/api/webhooks/123456/sEcReT-tOkEn-value"


def test_defaults_are_log_only() -> None:
    cfg = AlerterConfig.from_env({})
    assert cfg.webhook is None
    assert cfg.group_id == "cryptomon-alerter"
    assert cfg.topics == ["signals.alerts", "signals.arbitrage"]
    assert cfg.state_file is None
    assert "log-only" in cfg.describe()


def test_url_from_env_never_shown() -> None:
    cfg = AlerterConfig.from_env({"DISCORD_WEBHOOK_URL": URL, "ALERTER_GROUP_ID": "g2",
                                  "KAFKA_ALERTS_TOPIC": "a", "KAFKA_ARBITRAGE_TOPIC": "b"})
    assert cfg.webhook is not None and cfg.webhook.url == URL
    assert cfg.topics == ["a", "b"] and cfg.group_id == "g2"
    for text in (cfg.describe(), repr(cfg), str(cfg.webhook), f"{cfg.webhook}"):
        assert "sEcReT" not in text
    assert "123456" in cfg.webhook.redacted()


def test_url_from_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "webhook"
    secret.write_text(f"# managed by ansible\n{URL}\n")
    assert AlerterConfig.from_env({"DISCORD_WEBHOOK_FILE": str(secret)}).webhook.url == URL  # type: ignore[union-attr]
    secret.write_text("\n")
    assert AlerterConfig.from_env({"DISCORD_WEBHOOK_FILE": str(secret)}).webhook is None


def test_systemd_credential_and_state_directory(tmp_path: Path) -> None:
    (tmp_path / "discord-webhook").write_text(URL)
    cfg = AlerterConfig.from_env({"CREDENTIALS_DIRECTORY": str(tmp_path), "STATE_DIRECTORY": "/var/lib/x"})
    assert cfg.webhook is not None and cfg.webhook.url == URL
    assert cfg.state_file == Path("/var/lib/x/sent-alert-ids")


@pytest.mark.parametrize("env, fragment", [
    ({"DISCORD_WEBHOOK_URL": URL, "DISCORD_WEBHOOK_FILE": "/x"}, "both set"),
    ({"DISCORD_WEBHOOK_FILE": "/nonexistent/webhook"}, "cannot read"),
    ({"DISCORD_WEBHOOK_URL": "ftp://x/api/webhooks/1/sEcReT"}, "not an http(s) URL"),
    ({"DISCORD_WEBHOOK_URL": "https://discord.com/sEcReT"}, "expected"),
    # Issue 15, defect 3: an invalid port fails at start, like any other invalid URL.
    ({"DISCORD_WEBHOOK_URL": "https://discord.com:99999/api/webhooks/1/sEcReT"}, "DISCORD_WEBHOOK_URL: not a valid"),
    ({"DISCORD_WEBHOOK_URL": "https://discord.com:0/api/webhooks/1/sEcReT"}, "DISCORD_WEBHOOK_URL: not a valid"),
    ({"DISCORD_WEBHOOK_URL": "https://discord.com:x/api/webhooks/1/sEcReT"}, "DISCORD_WEBHOOK_URL: not a valid"),
    ({"DISCORD_WEBHOOK_URL": "https://[sEcReT/api/webhooks/1/x"}, "DISCORD_WEBHOOK_URL: not a valid"),
    ({"ALERTER_OFFSET_RESET": "middle"}, "ALERTER_OFFSET_RESET"),
    ({"ALERTER_DEDUPE_SIZE": "-4"}, "ALERTER_DEDUPE_SIZE"),
    ({"KAFKA_BOOTSTRAP_SERVERS": "nohostport"}, "KAFKA_BOOTSTRAP_SERVERS"),
])
def test_config_errors_are_one_line_and_secret_free(env: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        AlerterConfig.from_env(env)
    msg = str(err.value)
    assert fragment in msg and "\n" not in msg and "sEcReT" not in msg


def test_webhook_secrets_cover_token_and_path() -> None:
    hook = Webhook(URL)
    assert "sEcReT-tOkEn-value" in hook.secrets and "/api/webhooks/123456/sEcReT-tOkEn-value" in hook.secrets


def test_sent_ids_survive_restart_and_stay_bounded(tmp_path: Path) -> None:
    path = tmp_path / "state" / "sent"
    ids = SentIds(capacity=3, path=path)
    for i in range(7):
        ids.add(f"id{i}")
    assert len(ids) == 3 and "id6" in ids and "id3" not in ids
    reloaded = SentIds(capacity=3, path=path)
    assert "id6" in reloaded and "id4" in reloaded and "id3" not in reloaded
    # Compaction rewrote the file at 2x capacity, so it does not grow without bound.
    assert len(path.read_text().splitlines()) < 7
