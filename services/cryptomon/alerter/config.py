"""Alerter configuration, parsed once from the environment into a typed object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptomon.cli_args import check_file_location, log_level
from cryptomon.kafka_settings import ConfigError, KafkaSettings
from cryptomon.metrics import MetricsSettings

__all__ = ["AlerterConfig", "ConfigError", "Webhook"]

_OFFSET_RESETS = ("earliest", "latest")


class Webhook:
    """A Discord webhook URL that cannot leak through repr/str/f-strings.

    The token in the path is a credential: anyone holding it can post to the channel.
    """

    __slots__ = ("_url",)

    def __init__(self, url: str) -> None:
        self._url = url

    @property
    def url(self) -> str:
        return self._url

    @property
    def secrets(self) -> tuple[str, ...]:
        """Substrings that must never be logged: the URL, its path and the token."""
        parts = urlsplit(self._url)
        token = parts.path.rstrip("/").rsplit("/", 1)[-1]
        return tuple(s for s in (self._url, parts.path, token) if len(s) >= 6)

    def redacted(self) -> str:
        """Host and webhook id only, e.g. `discord.com webhook 1234…`."""
        parts = urlsplit(self._url)
        segments = [s for s in parts.path.split("/") if s]
        wid = segments[-2] if len(segments) >= 2 else "?"
        return f"{parts.hostname} webhook {wid} (token hidden)"

    def __repr__(self) -> str:
        return f"Webhook({self.redacted()})"

    __str__ = __repr__

    @classmethod
    def parse(cls, url: str, source: str) -> Webhook:
        url = url.strip()
        # Never echo the value: it is the secret itself.
        try:
            parts = urlsplit(url)
            port = parts.port  # raises ValueError for a port that is not 0-65535 or not a number
        except ValueError:
            raise ConfigError(f"{source}: not a valid URL (bad host or port)") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{source}: not an http(s) URL")
        if port == 0:
            raise ConfigError(f"{source}: not a valid URL (port 0)")
        segments = [s for s in parts.path.split("/") if s]
        if len(segments) < 2:
            raise ConfigError(f"{source}: expected .../webhooks/<id>/<token>")
        return cls(url)


@dataclass(frozen=True)
class AlerterConfig:
    webhook: Webhook | None  # None = log-only mode
    kafka: KafkaSettings
    group_id: str = "cryptomon-alerter"
    offset_reset: str = "earliest"
    username: str = "cryptomon"
    state_file: Path | None = None
    dedupe_size: int = 10000
    max_backoff: float = 60.0
    log_level: str = "INFO"
    # Alerts whose window ended longer ago are skipped (a new group starts at `earliest`, so
    # expired offsets would otherwise re-post days of history); 0 = no limit.
    max_alert_age_s: float = 600.0
    metrics: MetricsSettings = MetricsSettings()  # METRICS_PORT / METRICS_ADDRESS

    @property
    def topics(self) -> list[str]:
        return [self.kafka.alerts_topic, self.kafka.arbitrage_topic]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AlerterConfig:
        env = os.environ if env is None else env

        def get(name: str) -> str:
            return env.get(name, "").strip()

        webhook = _webhook_from_env(env)
        kafka = KafkaSettings.from_env(env)
        group_id = get("ALERTER_GROUP_ID") or cls.group_id
        offset_reset = (get("ALERTER_OFFSET_RESET") or cls.offset_reset).lower()
        if offset_reset not in _OFFSET_RESETS:
            raise ConfigError(f"ALERTER_OFFSET_RESET: {offset_reset!r} is not one of {', '.join(_OFFSET_RESETS)}")
        state, state_var = get("ALERTER_STATE_FILE"), "ALERTER_STATE_FILE"
        if not state and get("STATE_DIRECTORY"):
            # systemd's StateDirectory= sets this; first entry if several.
            state = str(Path(get("STATE_DIRECTORY").split(":")[0]) / "sent-alert-ids")
            state_var = "STATE_DIRECTORY"
        state_file = None if state.lower() in ("", "none", "off") else Path(state)
        if state_file is not None:
            check_file_location(state_var, state_file)
        level = log_level(get("ALERTER_LOG_LEVEL"), "ALERTER_LOG_LEVEL", cls.log_level)
        return cls(
            webhook=webhook,
            kafka=kafka,
            group_id=group_id,
            offset_reset=offset_reset,
            username=get("DISCORD_USERNAME") or cls.username,
            state_file=state_file,
            dedupe_size=_positive_int(env, "ALERTER_DEDUPE_SIZE", cls.dedupe_size),
            max_backoff=float(_positive_int(env, "ALERTER_MAX_BACKOFF_S", int(cls.max_backoff))),
            log_level=level,
            max_alert_age_s=float(_non_negative_int(env, "ALERTER_MAX_ALERT_AGE_S", int(cls.max_alert_age_s))),
            metrics=MetricsSettings.from_env(env),
        )

    def describe(self) -> str:
        """One start-up line, secrets redacted."""
        hook = self.webhook.redacted() if self.webhook else "none (log-only mode)"
        return (f"webhook={hook} kafka[{self.kafka.redacted()}] topics={','.join(self.topics)} "
                f"group={self.group_id} state_file={self.state_file or 'none'} "
                f"max_alert_age={f'{self.max_alert_age_s:g}s' if self.max_alert_age_s else 'off'} "
                f"metrics={self.metrics.describe()}")


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise ConfigError(f"{name}: {raw!r} is not a positive integer")
    return int(raw)


def _non_negative_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise ConfigError(f"{name}: {raw!r} is not a whole number of seconds (0 or more)")
    return int(raw)


def _webhook_from_env(env: Mapping[str, str]) -> Webhook | None:
    url = env.get("DISCORD_WEBHOOK_URL", "").strip()
    file = env.get("DISCORD_WEBHOOK_FILE", "").strip()
    if not file and env.get("CREDENTIALS_DIRECTORY"):
        # systemd LoadCredential=discord-webhook:/path works without any extra variable.
        cred = Path(env["CREDENTIALS_DIRECTORY"]) / "discord-webhook"
        if cred.is_file():
            file = str(cred)
    if url and file:
        raise ConfigError("DISCORD_WEBHOOK_URL and DISCORD_WEBHOOK_FILE are both set: use one")
    if file:
        try:
            content = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"DISCORD_WEBHOOK_FILE: cannot read {file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"DISCORD_WEBHOOK_FILE: {file} is not UTF-8 text") from None
        lines = [ln.strip() for ln in content.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        if not lines:
            return None  # an empty secret file = deliberately no webhook: log-only mode
        if len(lines) > 1:
            raise ConfigError(f"DISCORD_WEBHOOK_FILE: {file} must hold exactly one URL")
        return Webhook.parse(lines[0], f"DISCORD_WEBHOOK_FILE ({file})")
    if url:
        return Webhook.parse(url, "DISCORD_WEBHOOK_URL")
    return None
