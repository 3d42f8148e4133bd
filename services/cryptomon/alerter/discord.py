"""Discord webhook client: proactive rate limiting, 429/5xx handling, no 4xx loops.

Outcomes of `post()`:
- returns Delivered when Discord accepted the message (2xx with `?wait=true`);
- raises Rejected for a 400/other 4xx about the payload (retrying would fail the same way);
- raises WebhookDead for 401/403/404: the webhook is gone or the token is wrong, and every
  later call raises at once without a request (Discord bans clients that repeat invalid requests);
- raises Stopped when the stop event is set while waiting (shutdown: nothing was confirmed).
429s are waited out (`retry_after`, else Retry-After) and retried; 5xx, timeouts and connection
errors are retried with capped exponential backoff and jitter, until success or stop.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from cryptomon.alerter.config import Webhook

log = logging.getLogger("cryptomon.alerter.discord")

USER_AGENT = "DiscordBot (https://github.com/cryptomon, 0.1) cryptomon-alerter"
# Client and server clocks differ and headers are rounded to ms: wait a little longer.
SAFETY_MARGIN = 0.05


class DiscordError(Exception):
    pass


class Rejected(DiscordError):
    """Discord refused this payload (4xx other than auth/unknown webhook/429)."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(f"HTTP {status} code {code}: {message}")
        self.status, self.code = status, code


class WebhookDead(DiscordError):
    """401/403/404: stop using this webhook."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(f"HTTP {status} code {code}: {message}")
        self.status, self.code = status, code


class Stopped(DiscordError):
    """Shutdown was requested before Discord confirmed the message."""


class PostObserver(Protocol):
    """Told how long Discord took (the alerter's metrics); never changes an outcome."""

    def request_done(self, seconds: float, status: int | None) -> None:
        """One HTTP request answered (`status`) or failed on the network (None)."""

    def post_done(self, seconds: float) -> None:
        """A message accepted, `seconds` after post() began (waits and retries included)."""


@dataclass
class Delivered:
    message_id: str | None
    attempts: int


def with_wait(url: str) -> str:
    """The URL with `wait=true`, keeping other query parameters (e.g. thread_id)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "wait"]
    query.append(("wait", "true"))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


class DiscordWebhookClient:
    def __init__(
        self,
        webhook: Webhook,
        stop: threading.Event | None = None,
        *,
        max_backoff: float = 60.0,
        base_backoff: float = 1.0,
        timeout: tuple[float, float] = (5.0, 15.0),
        on_wait: Callable[[], None] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self._webhook = webhook
        self._url = with_wait(webhook.url)
        self._stop = stop or threading.Event()
        self._max_backoff, self._base_backoff, self._timeout = max_backoff, base_backoff, timeout
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        self._not_before = 0.0  # monotonic time before which the bucket is known to be empty
        self._dead: WebhookDead | None = None
        self.on_wait = on_wait  # called about once a second during long waits (Kafka keep-alive)
        self.observer: PostObserver | None = None
        self.stats = {"sent": 0, "rate_limited": 0, "server_errors": 0, "network_errors": 0, "proactive_waits": 0}

    @property
    def dead(self) -> bool:
        return self._dead is not None

    def close(self) -> None:
        self._session.close()

    def scrub(self, message: str) -> str:
        for secret in self._webhook.secrets:
            message = message.replace(secret, "***")
        return message

    def _sleep(self, seconds: float) -> None:
        """Interruptible sleep that keeps the caller alive (on_wait) while it waits."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self._stop.wait(min(left, 1.0)):
                raise Stopped("shutdown while waiting to post")
            if self.on_wait is not None:
                self.on_wait()

    def _update_bucket(self, resp: requests.Response) -> None:
        """Honour X-RateLimit-* before it bites: no request while the bucket is empty."""
        remaining = resp.headers.get("X-RateLimit-Remaining")
        reset_after = resp.headers.get("X-RateLimit-Reset-After")
        if remaining is None or reset_after is None:
            return
        try:
            if int(remaining) <= 0:
                self._not_before = max(self._not_before, time.monotonic() + float(reset_after) + SAFETY_MARGIN)
        except ValueError:
            return

    def post(self, payload: dict[str, Any]) -> Delivered:
        if self._dead is not None:
            raise self._dead
        attempt = 0
        failures = 0  # consecutive 5xx/network failures, for the backoff
        began = time.monotonic()
        while True:
            if self._stop.is_set():
                raise Stopped("shutdown before posting")
            wait = self._not_before - time.monotonic()
            if wait > 0:
                self.stats["proactive_waits"] += 1
                log.debug("rate-limit bucket empty: waiting %.2fs before the next request", wait)
                self._sleep(wait)
            attempt += 1
            sent_at = time.monotonic()
            try:
                resp = self._session.post(self._url, json=payload, timeout=self._timeout)
            except requests.RequestException as exc:
                self._observe_request(sent_at, None)
                # The exception text embeds the URL: log the type and a scrubbed reason only.
                failures += 1
                self.stats["network_errors"] += 1
                delay = self._backoff(failures)
                log.warning("Discord unreachable (%s: %s); retry %d in %.1fs", type(exc).__name__,
                            self.scrub(str(exc))[:300], failures, delay)
                self._sleep(delay)
                continue
            self._observe_request(sent_at, resp.status_code)
            self._update_bucket(resp)
            status = resp.status_code
            body = _json(resp)
            if 200 <= status < 300:
                self.stats["sent"] += 1
                if self.observer is not None:
                    self.observer.post_done(time.monotonic() - began)
                return Delivered(str(body.get("id")) if isinstance(body, dict) and body.get("id") else None, attempt)
            code = body.get("code") if isinstance(body, dict) else None
            message = self.scrub(str(body.get("message", "")) if isinstance(body, dict) else resp.text[:200])
            if status == 429:
                self.stats["rate_limited"] += 1
                retry_after = _retry_after(resp, body)
                scope = "global" if isinstance(body, dict) and body.get("global") else \
                    resp.headers.get("X-RateLimit-Scope", "webhook")
                log.warning("Discord rate limit (%s): waiting %.2fs as asked", scope, retry_after)
                self._not_before = max(self._not_before, time.monotonic() + retry_after + SAFETY_MARGIN)
                continue
            if status in (401, 403, 404):
                self._dead = WebhookDead(status, code, message)
                raise self._dead
            if status >= 500:
                failures += 1
                self.stats["server_errors"] += 1
                delay = self._backoff(failures)
                log.warning("Discord answered %d; retry %d in %.1fs", status, failures, delay)
                self._sleep(delay)
                continue
            detail = ""
            if isinstance(body, dict) and body.get("errors"):
                detail = " errors=" + self.scrub(str(body["errors"]))[:500]
            raise Rejected(status, code, message + detail)

    def _observe_request(self, sent_at: float, status: int | None) -> None:
        if self.observer is not None:
            self.observer.request_done(time.monotonic() - sent_at, status)

    def _backoff(self, failures: int) -> float:
        delay = min(self._max_backoff, self._base_backoff * 2 ** (failures - 1))
        return delay * random.uniform(0.8, 1.2)


def _json(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _retry_after(resp: requests.Response, body: Any) -> float:
    """Seconds to wait after a 429: the body's float first, then the header, then 1 s."""
    for raw in ((body or {}).get("retry_after") if isinstance(body, dict) else None,
                resp.headers.get("Retry-After"),
                resp.headers.get("X-RateLimit-Reset-After")):
        try:
            if raw is not None and float(raw) >= 0:
                return min(float(raw), 3600.0)
        except (TypeError, ValueError):
            continue
    return 1.0
