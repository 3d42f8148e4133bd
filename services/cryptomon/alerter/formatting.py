"""Alert JSON -> Discord webhook payload, always within Discord's documented limits.

Limits are counted in UTF-16 code units, which is never less than the number of code points:
whichever way Discord counts, a payload built here fits.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

CONTENT_MAX = 2000
EMBEDS_MAX = 10
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
USERNAME_MAX = 80
EMBED_TOTAL_MAX = 6000

ELLIPSIS = "…"

COLOURS = {
    "volume_anomaly": 0xE67E22,  # orange: unusual activity on one exchange
    "arbitrage": 0x2ECC71,  # green: a cross-exchange opportunity
    "quote_arbitrage": 0x1ABC9C,  # teal: an executable opportunity open right now
}
UNKNOWN_COLOUR = 0x95A5A6  # grey: a type this alerter does not know yet
CLOSED_COLOUR = 0x5D6D7E  # dark grey: an episode that ended (an update, nothing to act on)
TEST_COLOUR = 0x3498DB

# Mentions from alert text (a symbol named "@everyone"...) must never ping anyone.
NO_MENTIONS: dict[str, Any] = {"parse": []}


def ulen(text: str) -> int:
    """Length in UTF-16 code units (astral characters count twice)."""
    return len(text.encode("utf-16-le")) // 2


def truncate(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` UTF-16 units, marking the cut with an ellipsis."""
    if ulen(text) <= limit:
        return text
    if limit <= 0:
        return ""
    out: list[str] = []
    used = 0
    budget = limit - 1  # room for the ellipsis (one unit)
    for ch in text:
        n = 2 if ord(ch) > 0xFFFF else 1
        if used + n > budget:
            break
        out.append(ch)
        used += n
    return "".join(out) + ELLIPSIS


def parse_time(value: Any) -> datetime | None:
    """ISO-8601 strings, epoch milliseconds (int/float/numeric string) or epoch seconds."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        s = value.strip()
        if not s:
            return None
        try:
            value = float(s)
        except ValueError:
            try:
                dt = datetime.fromisoformat(s)
            except ValueError:
                return None
            return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        # Epoch ms is the contract; values below 1e11 can only be seconds (1e11 ms is 1973).
        seconds = value / 1000 if abs(value) >= 1e11 else float(value)
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def event_time(alert: dict[str, Any]) -> datetime | None:
    """When the alert's window closed (docs/alerts.md: `window_end_ms`, else `window_end`), or
    when it opened if only that is known; `event_ms` for the windowless quote_arbitrage alerts
    (the opening or the closing quote's time)."""
    for key in ("window_end_ms", "window_end", "window_start_ms", "window_start", "event_ms"):
        when = parse_time(alert.get(key))
        if when is not None:
            return when
    return None


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _hhmmss(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%H:%M:%S")


def text(value: Any) -> str:
    """A field value as text; decimal strings stay exact (no float round-trip)."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value if value.strip() else "—"
    if isinstance(value, bool | int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def number(value: Any) -> str:
    """Decimal with thousands separators, digits kept exactly as given."""
    if isinstance(value, bool):
        return str(value)
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return text(value)
    if not d.is_finite():
        return text(value)
    return f"{d:,}"


def window_text(alert: dict[str, Any]) -> str | None:
    start, end = parse_time(alert.get("window_start")), parse_time(alert.get("window_end"))
    if start and end:
        day = start.astimezone(UTC).strftime("%Y-%m-%d")
        return f"{day} {_hhmmss(start)}–{_hhmmss(end)} UTC"
    if start or end:
        return f"{_iso(start or end)}"  # type: ignore[arg-type]
    return None


def _fields(pairs: list[tuple[str, Any, bool]]) -> list[dict[str, Any]]:
    return [{"name": name, "value": value, "inline": inline} for name, value, inline in pairs if value is not None]


def money(value: Any) -> str:
    """`$1,234.5`, `-$4.02`: exact digits, grouped, sign before the dollar."""
    shown = number(value)
    if not _is_number(value):
        return shown
    return f"-${shown[1:]}" if shown.startswith("-") else f"${shown}"


def dollars(value: Any) -> str:
    """`$1,204.34`: money a person acts on, to the cent (half up). The job's exact figure stays
    in Kafka; `$10.944945` on a phone is noise."""
    if not _is_number(value):
        return money(value)
    cents = Decimal(str(value).strip()).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return money(str(cents))


def _with_bps(usd: Any, bps: Any) -> str:
    return f"{money(usd)} ({number(bps)} bps)" if bps is not None else money(usd)


# Why so few fields: a phone shows an embed's first lines; each message answers "what, where,
# how much" at a glance. Evidence and bookkeeping (trade counts, last-trade times, venue lists,
# demo flag) stay in Kafka and the logs; the footer carries a short remainder and the alert id.

def _anomaly_embed(a: dict[str, Any]) -> dict[str, Any]:
    symbol, exchange = text(a.get("symbol")), text(a.get("exchange"))
    threshold = a.get("volume_threshold", a.get("threshold"))
    spike = None
    if a.get("spike_ratio") is not None:
        spike = f"{number(a['spike_ratio'])}× mean"
        if a.get("baseline_volume") is not None:
            spike += f" {number(a['baseline_volume'])}"
    pairs: list[tuple[str, Any, bool]] = [
        ("Volume", number(a.get("volume")), True),
        ("Threshold", number(threshold) if threshold is not None else "none", True),
        ("Spike", spike, True),
        ("Window", window_text(a), False),
    ]
    return {"title": f"Volume anomaly: {symbol} on {exchange}", "fields": _fields(pairs),
            "footer": {"text": _footer(a)}}


def _arbitrage_embed(a: dict[str, Any]) -> dict[str, Any]:
    asset = text(a.get("asset") or a.get("symbol"))
    buy, sell = a.get("buy_exchange"), a.get("sell_exchange")
    title = f"Arbitrage: {asset}"
    if buy and sell:
        title += f" buy on {text(buy)}, sell on {text(sell)}"
    buy_price, sell_price = _venue_price(a, "buy"), _venue_price(a, "sell")
    gross = a.get("spread_usd")
    if gross is None and _is_number(buy_price) and _is_number(sell_price):
        gross = str(Decimal(str(sell_price)) - Decimal(str(buy_price)))
    net = None
    if a.get("net_spread_usd") is not None:
        net = _with_bps(a["net_spread_usd"], a.get("net_spread_bps"))
    pairs: list[tuple[str, Any, bool]] = [
        ("Buy", f"{text(buy)} @ {number(buy_price)}", True),
        ("Sell", f"{text(sell)} @ {number(sell_price)}", True),
        ("Gross spread", _with_bps(gross, a.get("spread_bps")) if gross is not None else None, True),
        ("Net spread (after fees)", net, True),
    ]
    notes = []
    if isinstance(a.get("venue_count"), int) and not isinstance(a.get("venue_count"), bool):
        notes.append(f"{a['venue_count']} venues")
    if a.get("threshold_usd") is not None:
        trigger = f" {text(a['trigger'])}" if a.get("trigger") else ""
        notes.append(f"threshold {money(a['threshold_usd'])}{trigger}")
    if a.get("demo_mode") is True:
        notes.append("demo mode")
    return {"title": title, "fields": _fields(pairs), "footer": {"text": _footer(a, notes)}}


QUOTE_STATES = ("open", "close")
CLOSE_REASONS = {"reverted": "spread reverted", "stale": "stale quote (a side went silent)"}


def duration_text(ms: Any) -> str:
    """850 -> `850 ms`, 2400 -> `2.4 s`, 185000 -> `3m 05s`, 7440000 -> `2h 04m` (rounded down)."""
    if not _is_number(ms):
        return text(ms)
    total = max(0, int(Decimal(str(ms).strip())))
    if total < 1000:
        return f"{total} ms"
    if total < 60_000:
        return f"{total // 1000}.{total % 1000 // 100} s"
    s = total // 1000
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s // 60 % 60:02d}m"
    return f"{s // 86400}d {s // 3600 % 24}h"


def _bps(value: Any) -> str:
    return f"{number(value)} bps"


def _route(a: dict[str, Any], with_prices: bool) -> str:
    buy, sell = text(a.get("buy_exchange")), text(a.get("sell_exchange"))
    if with_prices:
        buy += f" {number(a.get('buy_price'))}"
        sell += f" {number(a.get('sell_price'))}"
    return f"{text(a.get('asset'))} arbitrage: buy {buy} → sell {sell}"


def _quote_open_embed(a: dict[str, Any]) -> dict[str, Any]:
    size = f"{number(a.get('size'))} {text(a.get('asset'))}"
    pairs: list[tuple[str, Any, bool]] = [
        ("Net after fees", _bps(a.get("net_spread_bps")), True),
        ("Profit", dollars(a.get("net_profit_usd")), True),
        ("Size", size, True),
        ("Notional", dollars(a.get("notional_usd")), True),
    ]
    notes = []
    if a.get("buy_fee_bps") is not None and a.get("sell_fee_bps") is not None:
        notes.append(f"fees {number(a['buy_fee_bps'])} + {number(a['sell_fee_bps'])} bps")
    if _is_number(a.get("buy_quote_ms")) and _is_number(a.get("sell_quote_ms")):
        apart = abs(Decimal(str(a["sell_quote_ms"])) - Decimal(str(a["buy_quote_ms"])))
        notes.append(f"quotes {duration_text(apart)} apart")
    if a.get("demo_mode") is True:
        notes.append("demo mode")
    return {"title": _route(a, with_prices=True), "fields": _fields(pairs), "footer": {"text": _footer(a, notes)},
            "color": COLOURS["quote_arbitrage"]}


def _quote_close_embed(a: dict[str, Any]) -> dict[str, Any]:
    """The end of an episode. Webhooks cannot reply to the open message, so this one says it is
    an update: `Closed:` before the open message's route, grey, how long it lasted and its peak."""
    peak = _bps(a.get("peak_net_spread_bps"))
    if _is_number(a.get("peak_net_profit_usd")):
        peak += f" ({dollars(a['peak_net_profit_usd'])})"
    reason = a.get("close_reason")
    why = CLOSE_REASONS.get(reason, text(reason)) if isinstance(reason, str) else text(reason)
    if reason == "reverted" and a.get("net_spread_bps") is not None:
        why += f", net {_bps(a['net_spread_bps'])}"
    pairs: list[tuple[str, Any, bool]] = [
        ("Lasted", duration_text(a.get("duration_ms")), True),
        ("Peak net", peak, True),
        ("Reason", why, True),
    ]
    opened = parse_time(a.get("opened_ms"))
    notes = [f"update of the {_hhmmss(opened)} UTC alert"] if opened else []
    return {"title": f"Closed: {_route(a, with_prices=False)}", "fields": _fields(pairs),
            "footer": {"text": _footer(a, notes)}, "color": CLOSED_COLOUR}


def _quote_arbitrage_embed(a: dict[str, Any]) -> dict[str, Any]:
    return _quote_close_embed(a) if a.get("episode_state") == "close" else _quote_open_embed(a)


def _footer(a: dict[str, Any], notes: list[str] | None = None) -> str:
    # The id stays last: it is what an operator greps the logs for (and what tests read back).
    return " · ".join(["cryptomon", *(notes or []), f"alert {text(a.get('alert_id'))}"])


def _generic_embed(a: dict[str, Any]) -> dict[str, Any]:
    kind = text(alert_kind(a) or "unknown")
    pairs: list[tuple[str, Any, bool]] = [("Window", window_text(a), False)]
    known = set(_COMMON)
    return {"title": f"Alert: {kind}", "description": text(a["reason"]) if a.get("reason") else None,
            "fields": _fields(pairs) + _extra_fields(a, known | {"reason"})}


def _is_number(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return False
    try:
        return Decimal(str(value).strip()).is_finite()
    except (InvalidOperation, ValueError):
        return False


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _venue_price(a: dict[str, Any], side: str) -> Any:
    """The buy/sell price: `buy_price` (both schemas), else `<venue>_price` (older alerts)."""
    if a.get(f"{side}_price") is not None:
        return a.get(f"{side}_price")
    venue = a.get(f"{side}_exchange")
    return a.get(f"{venue.strip().lower()}_price") if _is_name(venue) else None


def missing_fields(alert: dict[str, Any]) -> list[str]:
    """The fields this alert's type needs (docs/alerts.md) that are absent or unusable.

    An alert missing them cannot say what happened, so it is malformed, not a message with
    dashes. Types this alerter does not know need nothing (they are shown generically)."""
    kind = alert_kind(alert)
    missing: list[str] = []
    if kind == "volume_anomaly":
        missing += [k for k in ("exchange", "symbol") if not _is_name(alert.get(k))]
        missing += [k for k in ("volume",) if not _is_number(alert.get(k))]
    elif kind == "arbitrage":
        missing += [k for k in ("asset", "buy_exchange", "sell_exchange") if not _is_name(alert.get(k))]
        missing += [f"{side}_price" for side in ("buy", "sell") if not _is_number(_venue_price(alert, side))]
        if _schema(alert) >= 2:
            # Schema 2 always carries both spreads: without them the net-of-fees line is a guess.
            missing += [k for k in ("spread_usd", "net_spread_usd") if not _is_number(alert.get(k))]
    elif kind == "quote_arbitrage":
        missing += _quote_missing(alert)
    return missing


def _quote_missing(alert: dict[str, Any]) -> list[str]:
    """What each state's message shows (docs/flink-jobs.md, quote_arbitrage schema 1). Without a
    known `episode_state` it is neither an opening nor a closing, so nothing else is judged."""
    state = alert.get("episode_state")
    missing = [k for k in ("asset", "buy_exchange", "sell_exchange") if not _is_name(alert.get(k))]
    if state not in QUOTE_STATES:
        return [*missing, "episode_state"]
    if state == "open":
        numbers = ("buy_price", "sell_price", "net_spread_bps", "net_profit_usd", "size", "notional_usd")
    else:
        if alert.get("close_reason") not in CLOSE_REASONS:
            missing.append("close_reason")
        numbers = ("duration_ms", "peak_net_spread_bps")
    return missing + [k for k in numbers if not _is_number(alert.get(k))]


def _schema(alert: dict[str, Any]) -> int:
    raw = alert.get("schema_version")
    return raw if isinstance(raw, int) and not isinstance(raw, bool) else 1


def alert_kind(a: dict[str, Any]) -> Any:
    """The alert's kind: `alert_type` (what the Flink jobs write), else a plain `type`."""
    return a.get("alert_type") or a.get("type")


# Bookkeeping fields every job alert carries; shown elsewhere (footer, window) or not useful.
_COMMON = {"alert_id", "type", "alert_type", "schema_version", "job", "window_start", "window_end",
           "window_start_ms", "window_end_ms", "summary"}


def _extra_fields(a: dict[str, Any], known: set[str]) -> list[dict[str, Any]]:
    """Fields the contract did not name are still shown (the Flink jobs may add some)."""
    return [{"name": k, "value": text(v), "inline": True} for k, v in a.items() if k not in known]


def build_embed(alert: dict[str, Any]) -> dict[str, Any]:
    kind = alert_kind(alert)
    if kind == "volume_anomaly":
        embed = _anomaly_embed(alert)
    elif kind == "arbitrage":
        embed = _arbitrage_embed(alert)
    elif kind == "quote_arbitrage":
        embed = _quote_arbitrage_embed(alert)
    else:
        embed = _generic_embed(alert)
    embed.setdefault("color", COLOURS.get(kind if isinstance(kind, str) else "", UNKNOWN_COLOUR))
    embed["timestamp"] = _iso(event_time(alert) or datetime.now(UTC))
    embed.setdefault("footer", {"text": _footer(alert)})
    if not embed.get("description"):
        embed.pop("description", None)
    return clamp_embed(embed)


def clamp_embed(embed: dict[str, Any]) -> dict[str, Any]:
    """Enforce the per-element limits, then the 6000-unit total by dropping/cutting from the end."""
    e = dict(embed)
    if "title" in e:
        e["title"] = truncate(e["title"] or "—", TITLE_MAX)
    if "description" in e:
        e["description"] = truncate(e["description"], DESCRIPTION_MAX)
    if "footer" in e:
        e["footer"] = {**e["footer"], "text": truncate(e["footer"]["text"] or "—", FOOTER_MAX)}
    fields = []
    for f in (e.get("fields") or [])[:FIELDS_MAX]:
        # Discord rejects empty names/values, so they become a dash.
        fields.append({**f, "name": truncate(f["name"] or "—", FIELD_NAME_MAX) or "—",
                       "value": truncate(f["value"] or "—", FIELD_VALUE_MAX) or "—"})
    if len(embed.get("fields") or []) > FIELDS_MAX:
        dropped = len(embed["fields"]) - (FIELDS_MAX - 1)
        more = {"name": "…", "value": f"{dropped} more fields not shown", "inline": False}
        fields = fields[: FIELDS_MAX - 1] + [more]
    e["fields"] = fields

    # Total budget: title and footer are kept, then the description, then fields in order.
    budget = EMBED_TOTAL_MAX - ulen(e.get("title", "")) - ulen(e.get("footer", {}).get("text", ""))
    if "description" in e:
        e["description"] = truncate(e["description"], max(0, min(budget - 200, DESCRIPTION_MAX)))
        budget -= ulen(e["description"])
        if not e["description"]:
            del e["description"]
    kept = []
    for f in e["fields"]:
        need = ulen(f["name"]) + ulen(f["value"])
        if need <= budget:
            kept.append(f)
            budget -= need
            continue
        room = budget - ulen(f["name"])
        if room >= 20:  # worth showing a cut value
            kept.append({**f, "value": truncate(f["value"], room)})
            budget -= ulen(f["name"]) + ulen(kept[-1]["value"])
        break
    e["fields"] = kept
    return e


def embed_size(embed: dict[str, Any]) -> int:
    """The characters Discord counts towards the 6000 total, in UTF-16 units."""
    n = ulen(embed.get("title") or "") + ulen(embed.get("description") or "")
    n += ulen((embed.get("footer") or {}).get("text") or "") + ulen((embed.get("author") or {}).get("name") or "")
    for f in embed.get("fields") or []:
        n += ulen(f.get("name") or "") + ulen(f.get("value") or "")
    return n


def build_payload(alert: dict[str, Any], username: str = "cryptomon") -> dict[str, Any]:
    return {
        "username": truncate(username, USERNAME_MAX),
        "embeds": [build_embed(alert)],
        "allowed_mentions": NO_MENTIONS,
    }


def fallback_payload(alert: dict[str, Any], username: str = "cryptomon") -> dict[str, Any]:
    """Plain-text last resort if Discord still rejected the embed (it should not)."""
    summary = json.dumps(alert, ensure_ascii=False, sort_keys=True, default=str)
    content = truncate(f"cryptomon alert ({text(alert_kind(alert))}): {summary}", CONTENT_MAX)
    return {"username": truncate(username, USERNAME_MAX), "content": content, "allowed_mentions": NO_MENTIONS}


def send_test_payload(username: str = "cryptomon") -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "username": truncate(username, USERNAME_MAX),
        "embeds": [{
            "title": "cryptomon test message",
            "description": "The alerter can post to this webhook.",
            "color": TEST_COLOUR,
            "timestamp": _iso(now),
            "footer": {"text": "cryptomon-alerter send-test"},
        }],
        "allowed_mentions": NO_MENTIONS,
    }


def summary_line(alert: dict[str, Any]) -> str:
    """One log line for an alert (log-only mode and delivery logs)."""
    embed = build_embed(alert)
    fields = ", ".join(f"{f['name']}={f['value']}" for f in embed.get("fields", []) if f["name"] != "Window")
    return truncate(f"{embed['title']} | {fields}", 1000)
