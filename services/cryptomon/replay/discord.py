"""A local stand-in for Discord webhooks that speaks Discord's wire protocol, errors included.

Used by the alerter tests and deployed in the sandbox instead of discord.com:

    python -m cryptomon.replay.discord --port 8090
    # then DISCORD_WEBHOOK_URL=http://127.0.0.1:8090/api/webhooks/1/sandbox-token

What it does, like Discord:
- `POST /api/webhooks/<id>/<token>[?wait=true]` validates the JSON body against the documented
  limits and answers 400 + code 50035 + a nested `errors` object on violations (50006 for an
  empty message, 50109 for invalid JSON), 200 + a message object with `wait=true`, else 204.
- A per-webhook bucket (5 requests per 2 s by default) with the X-RateLimit-* headers on every
  answer; over the limit: 429 + `{"message","retry_after","global"}` + Retry-After.
- Failures can be injected: the next N requests answer 5xx, 429, 401 or 404 (code 10015), or a
  webhook id can be deleted (permanent 404 10015).

Test/operator endpoints (not part of Discord's API):
- `GET /messages[?webhook=<id>]` accepted messages as JSON, oldest first.
- `GET /stats` request counters, `POST /control/reset`, `POST /control/inject`
  `{"status": 503, "count": 2, "retry_after": 0.5}`, `POST /control/delete` `{"webhook": "1"}`.
"""

from __future__ import annotations

import json
import math
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlparse

# Documented limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits).
CONTENT_MAX = 2000
EMBEDS_MAX = 10
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
AUTHOR_MAX = 256
USERNAME_MAX = 80
EMBED_TOTAL_MAX = 6000

_WEBHOOK_PATH = re.compile(r"^/api(?:/v\d+)?/webhooks/([^/]+)/([^/]+)/?$")


def _err(code: str, message: str) -> dict[str, Any]:
    return {"_errors": [{"code": code, "message": message}]}


def _put(tree: dict[str, Any], path: list[str], leaf: dict[str, Any]) -> None:
    node = tree
    for key in path:
        node = node.setdefault(key, {})
    node.setdefault("_errors", []).extend(leaf["_errors"])


def validate_payload(payload: Any) -> dict[str, Any] | None:
    """Discord's form validation for an execute-webhook body; returns the `errors` tree or None.

    Kept independent of the alerter's formatter on purpose: the tests use it to check the
    formatter, so the two must not share code.
    """
    errors: dict[str, Any] = {}
    if not isinstance(payload, dict):
        return {"_errors": [{"code": "DICT_TYPE_CONVERT", "message": "Only dictionaries may be used in a DictType"}]}

    def max_len(path: list[str], value: Any, limit: int, required: bool = False) -> int:
        if value is None:
            if required:
                _put(errors, path, _err("BASE_TYPE_REQUIRED", "This field is required"))
            return 0
        if not isinstance(value, str):
            _put(errors, path, _err("BASE_TYPE_STRING", "Must be a string."))
            return 0
        if required and not value.strip():
            _put(errors, path, _err("BASE_TYPE_REQUIRED", "This field is required"))
        if len(value) > limit:
            _put(errors, path, _err("BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."))
        return len(value)

    max_len(["content"], payload.get("content"), CONTENT_MAX)
    max_len(["username"], payload.get("username"), USERNAME_MAX)
    embeds = payload.get("embeds")
    total = 0
    if embeds is not None:
        if not isinstance(embeds, list):
            _put(errors, ["embeds"], _err("BASE_TYPE_LIST", "Must be a list."))
            embeds = []
        if len(embeds) > EMBEDS_MAX:
            _put(errors, ["embeds"], _err("BASE_TYPE_MAX_LENGTH", f"Must be {EMBEDS_MAX} or fewer in length."))
        for i, embed in enumerate(embeds):
            base = ["embeds", str(i)]
            if not isinstance(embed, dict):
                _put(errors, base, _err("DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType"))
                continue
            total += max_len([*base, "title"], embed.get("title"), TITLE_MAX)
            total += max_len([*base, "description"], embed.get("description"), DESCRIPTION_MAX)
            footer = embed.get("footer")
            if isinstance(footer, dict):
                total += max_len([*base, "footer", "text"], footer.get("text"), FOOTER_MAX, required=True)
            author = embed.get("author")
            if isinstance(author, dict):
                total += max_len([*base, "author", "name"], author.get("name"), AUTHOR_MAX, required=True)
            color = embed.get("color")
            if color is not None and (not isinstance(color, int) or not 0 <= color <= 0xFFFFFF):
                _put(errors, [*base, "color"], _err("NUMBER_TYPE_MAX", "int value should be <= 16777215."))
            ts = embed.get("timestamp")
            if ts is not None and not _is_iso8601(ts):
                _put(errors, [*base, "timestamp"],
                     _err("DATE_TIME_TYPE_PARSE", f"Could not parse {ts}. Should be ISO8601."))
            fields = embed.get("fields") or []
            if not isinstance(fields, list):
                _put(errors, [*base, "fields"], _err("BASE_TYPE_LIST", "Must be a list."))
                fields = []
            if len(fields) > FIELDS_MAX:
                _put(errors, [*base, "fields"],
                     _err("BASE_TYPE_MAX_LENGTH", f"Must be {FIELDS_MAX} or fewer in length."))
            for j, fld in enumerate(fields):
                fpath = [*base, "fields", str(j)]
                if not isinstance(fld, dict):
                    _put(errors, fpath, _err("DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType"))
                    continue
                total += max_len([*fpath, "name"], fld.get("name"), FIELD_NAME_MAX, required=True)
                total += max_len([*fpath, "value"], fld.get("value"), FIELD_VALUE_MAX, required=True)
        if total > EMBED_TOTAL_MAX:
            _put(errors, ["embeds"],
                 _err("MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {EMBED_TOTAL_MAX}"))
    return errors or None


def _is_iso8601(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    from datetime import datetime

    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


@dataclass
class _Bucket:
    limit: int
    per: float
    used: int = 0
    reset_at: float = 0.0  # monotonic
    bucket_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])

    def take(self, now: float) -> tuple[bool, dict[str, str], float]:
        """Count one request; returns (allowed, rate-limit headers, retry_after)."""
        if now >= self.reset_at:
            self.used, self.reset_at = 0, now + self.per
        reset_after = max(0.0, self.reset_at - now)
        allowed = self.used < self.limit
        if allowed:
            self.used += 1
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.limit - self.used)),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": self.bucket_id,
        }
        return allowed, headers, reset_after


@dataclass
class _Injection:
    status: int
    count: int
    retry_after: float = 1.0
    webhook: str | None = None


class FakeDiscord:
    """The server state plus a ThreadingHTTPServer; usable in-process (tests) or via main()."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, rate_limit: int = 5, per: float = 2.0,
                 token: str | None = None, max_messages: int = 10000) -> None:
        self.rate_limit, self.per, self.token, self.max_messages = rate_limit, per, token, max_messages
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._injections: list[_Injection] = []
        self._deleted: set[str] = set()
        self._blocked_until: dict[str, float] = {}  # webhook -> monotonic end of a 429 we sent
        self.messages: list[dict[str, Any]] = []
        self.stats: dict[str, int] = {}
        self.requests: list[dict[str, Any]] = []  # every webhook request: time, status
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        host = self._server.server_address[0]
        return f"http://{host}:{self.port}"

    def webhook_url(self, webhook_id: str = "1", token: str | None = None) -> str:
        return f"{self.base_url}/api/webhooks/{webhook_id}/{token or self.token or 'sandbox-token'}"

    def start(self) -> FakeDiscord:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-discord", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- control -------------------------------------------------------------------------
    def inject(self, status: int, count: int = 1, retry_after: float = 1.0, webhook: str | None = None) -> None:
        with self._lock:
            self._injections.append(_Injection(status, count, retry_after, webhook))

    def delete_webhook(self, webhook_id: str) -> None:
        with self._lock:
            self._deleted.add(webhook_id)

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
            self._injections.clear()
            self._deleted.clear()
            self._blocked_until.clear()
            self.messages.clear()
            self.stats.clear()
            self.requests.clear()

    def snapshot(self, webhook: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages if webhook is None or m["webhook_id"] == webhook]

    def stats_snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self.stats, "requests": list(self.requests)}

    # --- the protocol ----------------------------------------------------------------------
    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    def handle_webhook(self, webhook_id: str, token: str, query: dict[str, list[str]],
                       body: bytes) -> tuple[int, dict[str, str], Any]:
        now = time.monotonic()
        with self._lock:
            self._count("requests_total")
            status, headers, resp = self._decide(webhook_id, token, query, body, now)
            self._count(f"status_{status}")
            self.requests.append({"webhook_id": webhook_id, "status": status, "t": now, "wall": time.time()})
            if len(self.requests) > self.max_messages:
                del self.requests[: len(self.requests) - self.max_messages]
            return status, headers, resp

    def _decide(self, webhook_id: str, token: str, query: dict[str, list[str]], body: bytes,
                now: float) -> tuple[int, dict[str, str], Any]:
        if webhook_id in self._deleted:
            return 404, {}, {"message": "Unknown Webhook", "code": 10015}
        if self.token is not None and token != self.token:
            return 401, {}, {"message": "Invalid Webhook Token", "code": 50027}
        injected = self._take_injection(webhook_id)
        if injected is not None:
            return self._injected_answer(injected, webhook_id, now)
        blocked_until = self._blocked_until.get(webhook_id, 0.0)
        if now < blocked_until:
            # The client did not wait out the retry_after of an earlier 429: Discord answers
            # 429 again (and would eventually ban the caller).
            self._count("retry_after_ignored")
            return self._too_many({}, blocked_until - now, webhook_id, now)
        bucket = self._buckets.setdefault(webhook_id, _Bucket(self.rate_limit, self.per))
        allowed, headers, reset_after = bucket.take(now)
        if not allowed:
            # A request while the bucket is empty: the client ignored Remaining=0/Reset-After.
            self._count("bucket_exceeded")
            return self._too_many(headers, reset_after, webhook_id, now)
        try:
            payload = json.loads(body or b"")
        except (ValueError, UnicodeDecodeError):
            return 400, headers, {"message": "The request body contains invalid JSON.", "code": 50109}
        errors = validate_payload(payload)
        if errors:
            return 400, headers, {"code": 50035, "errors": errors, "message": "Invalid Form Body"}
        if not payload.get("content") and not payload.get("embeds"):
            return 400, headers, {"message": "Cannot send an empty message", "code": 50006}
        msg_id = str(int(time.time() * 1000) << 22 | len(self.messages))
        message = {
            "id": msg_id, "type": 0, "channel_id": "0", "webhook_id": webhook_id,
            "content": payload.get("content", ""), "embeds": payload.get("embeds", []),
            "username": payload.get("username"), "timestamp": _iso_now(),
            "received_monotonic": now,
        }
        self.messages.append(message)
        if len(self.messages) > self.max_messages:
            del self.messages[: len(self.messages) - self.max_messages]
        self._count("accepted")
        wait = (query.get("wait") or ["false"])[0].lower() == "true"
        return (200, headers, message) if wait else (204, headers, None)

    def _take_injection(self, webhook_id: str) -> _Injection | None:
        for inj in self._injections:
            if inj.webhook in (None, webhook_id) and inj.count > 0:
                inj.count -= 1
                if inj.count == 0:
                    self._injections.remove(inj)
                return inj
        return None

    def _injected_answer(self, inj: _Injection, webhook_id: str, now: float) -> tuple[int, dict[str, str], Any]:
        if inj.status == 429:
            headers = {"X-RateLimit-Scope": "global"}
            return self._too_many(headers, inj.retry_after, webhook_id, now, is_global=True)
        if inj.status == 404:
            return 404, {}, {"message": "Unknown Webhook", "code": 10015}
        if inj.status == 401:
            return 401, {}, {"message": "Invalid Webhook Token", "code": 50027}
        if inj.status == 403:
            return 403, {}, {"message": "Missing Access", "code": 50001}
        if inj.status >= 500:
            return inj.status, {}, {"message": "Internal Server Error", "code": 0}
        return inj.status, {}, {"message": "Injected error", "code": 0}

    def _too_many(self, headers: dict[str, str], retry_after: float, webhook_id: str, now: float,
                  is_global: bool = False) -> tuple[int, dict[str, str], Any]:
        self._count("rate_limited")
        self._blocked_until[webhook_id] = max(self._blocked_until.get(webhook_id, 0.0), now + retry_after)
        headers = {**headers, "Retry-After": str(max(1, math.ceil(retry_after)))}
        headers.setdefault("X-RateLimit-Scope", "user")
        body = {"message": "You are being rate limited.", "retry_after": round(retry_after, 3), "global": is_global}
        return 429, headers, body

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "fake-discord/1"

            def log_message(self, format: str, *args: Any) -> None:
                # The default logs every request line to stderr, token included: stay quiet.
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if data:
                    self.wfile.write(data)

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def do_POST(self) -> None:
                url = urlparse(self.path)
                body = self._body()
                m = _WEBHOOK_PATH.match(url.path)
                if m:
                    status, headers, resp = fake.handle_webhook(m.group(1), m.group(2), parse_qs(url.query), body)
                    self._send(status, resp, headers)
                    return
                try:
                    req = json.loads(body or b"{}")
                except ValueError:
                    self._send(400, {"error": "invalid JSON"})
                    return
                if url.path == "/control/reset":
                    fake.reset()
                elif url.path == "/control/inject":
                    fake.inject(int(req["status"]), int(req.get("count", 1)),
                                float(req.get("retry_after", 1.0)), req.get("webhook"))
                elif url.path == "/control/delete":
                    fake.delete_webhook(str(req["webhook"]))
                else:
                    self._send(404, {"message": "404: Not Found", "code": 0})
                    return
                self._send(200, {"ok": True})

            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path == "/messages":
                    webhook = (parse_qs(url.query).get("webhook") or [None])[0]
                    self._send(200, fake.snapshot(webhook))
                elif url.path == "/stats":
                    self._send(200, fake.stats_snapshot())
                elif url.path == "/healthz":
                    self._send(200, {"ok": True})
                else:
                    self._send(405 if _WEBHOOK_PATH.match(url.path) else 404,
                               {"message": "405: Method Not Allowed" if _WEBHOOK_PATH.match(url.path)
                                else "404: Not Found", "code": 0})

        return Handler


def _iso_now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat()


def main(argv: list[str] | None = None) -> int:
    from cryptomon.cli_args import (
        EXIT_CONFIG,
        OneLineParser,
        listen_address,
        port_or_zero,
        positive_float,
        positive_int,
    )
    from cryptomon.logging_setup import setup_logging

    ap = OneLineParser(prog="cryptomon-replay-discord", description="Local Discord-compatible webhook receiver")
    ap.add_argument("--host", type=listen_address, default="127.0.0.1")
    ap.add_argument("--port", type=port_or_zero, default=8090, help="0 = any free port")
    ap.add_argument("--rate-limit", type=positive_int, default=5, help="requests per window per webhook")
    ap.add_argument("--per", type=positive_float, default=2.0, help="rate-limit window in seconds")
    ap.add_argument("--token", default=None, help="only accept this webhook token (else any)")
    args = ap.parse_args(argv)
    setup_logging("INFO")
    try:
        fake = FakeDiscord(args.host, args.port, args.rate_limit, args.per, args.token)
    except OSError as exc:
        print(f"cryptomon-replay-discord: configuration error: --host/--port: cannot listen on "
              f"{args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"fake Discord listening on {fake.base_url}; webhook path /api/webhooks/<id>/<token>", flush=True)
    try:
        fake._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake._server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
