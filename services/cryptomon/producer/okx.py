"""OKX, API v5 public WebSocket, `trades` channel.

Subscribe: `{"id":"N","op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"},…]}`;
each arg is acknowledged with `{"id":"N","event":"subscribe","arg":{…},"connId":…}`. An error
(`{"id":"N","event":"error","code":"60018","msg":"…instId:FOO-USDT doesn't exist…"}`) refuses the
request: the named instrument is dropped with one log line and the rest of that request is sent
again; an error naming none ends the session (reconnect with backoff).

Trades: `{"arg":{…},"data":[{"instId","tradeId","px","sz","side","ts","count",…}]}`, all
strings; `side` is the taker's side (docs); one message per taker order and price, `tradeId`
the last of the `count` fills it covers. Trade ids are sequential per instrument, so the
high-water-mark dedupe is exact. Snapshot on subscribe: none documented for `trades` (nothing
to skip; replays after a reconnect would be deduplicated).

Keepalive: the server cuts a connection with no data for 30 s; the client sends the text
`ping` (not JSON) and expects `pong`: here every 15 s, reconnecting when no pong comes within
10 s. A `{"event":"notice","code":"64008"}` announces a service upgrade: reconnect at once.
Limits (documented): 3 new connections per second per IP, 480 subscribe requests per
connection per hour, 64 KB of args per request. We hold 100 instruments per connection (one
subscribe request) and send at most one message per 0.1 s.

Quotes (PRODUCER_QUOTES): `bbo-tbt` by default (OKX_QUOTE_CHANNEL=tickers for the other one),
subscribed in the same request as the trades, acknowledged per arg. `bbo-tbt` [docs]: a
1-level snapshot on subscribe, then a fresh snapshot every 10 ms when the level changes, the
same `seqId` resent after about 60 s idle; `{"arg":{"channel":"bbo-tbt","instId":…},"data":
[{"asks":[[px,sz,"0",orders]],"bids":[…],"ts":"<ms>","seqId":N}]}`, no instId inside the data.
`seqId` orders the quotes and can reset after maintenance (a reset with a later `ts` is
followed, see quote.QuoteOrder); `prevSeqId` is not sent on bbo-tbt. That bbo-tbt needs no
login comes from a ccxt note on older docs [unconfirmed]: if OKX refuses it, `tickers` is the
fallback: at most one push per 100 ms [docs], `bidPx`/`bidSz`/`askPx`/`askSz`/`ts` strings,
no sequence (ordered by `ts`); whether it pushes at once on subscribe is unconfirmed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptomon.kafka_settings import ConfigError

from .base import Limits, Reconnect, WebSocketAdapter
from .config import FeedSettings, ProducerConfig, get
from .fastjson import loads as _loads
from .schema import Trade, is_decimal
from .symbols import Market, normalized_listing, split_separated

_INST = re.compile(r"instId:\s*([A-Za-z0-9]+-[A-Za-z0-9]+)")
_SIDES = {"buy": "buy", "sell": "sell"}
QUOTE_CHANNELS = ("bbo-tbt", "tickers")


@dataclass(frozen=True)
class OkxSettings(FeedSettings):
    quote_channel: str = "bbo-tbt"

    @classmethod
    def fields_from_env(cls, spec: type[WebSocketAdapter], env: Mapping[str, str]) -> dict[str, Any]:
        fields = super().fields_from_env(spec, env)
        channel = get(env, "OKX_QUOTE_CHANNEL", "bbo-tbt")
        if channel not in QUOTE_CHANNELS:
            raise ConfigError(f"OKX_QUOTE_CHANNEL: {channel!r} is not bbo-tbt or tickers")
        return {**fields, "quote_channel": channel}


class OkxAdapter(WebSocketAdapter):
    exchange = "okx"
    symbols_var = "OKX_SYMBOLS"
    default_symbols = "BTC-USDT,ETH-USDT"
    url_var = "OKX_STREAM_URL"
    default_url = "wss://ws.okx.com:8443/ws/v5/public"
    rest_var = "OKX_REST_URL"
    default_rest_url = "https://www.okx.com"
    listing_path = "/api/v5/public/instruments?instType=SPOT"
    replay_server = "cryptomon.replay.okx:OkxReplay"
    replay_port = 9446
    replay_path = "/ws/v5/public"
    markets_per_ack = 1  # one ack per symbol
    default_stale_after_s = 30.0
    settings_class = OkxSettings
    extra_vars = {"OKX_QUOTE_CHANNEL": "bbo-tbt"}
    quote_channel = "bbo-tbt"
    ping_interval_s = 15.0
    pong_timeout_s = 10.0
    limits = Limits(streams_per_connection=500, default_streams_per_connection=100, subscribe_batch=100,
                    send_interval_s=0.1, connect_attempts=3, connect_window_s=1.0,
                    max_message_bytes=4 << 20)

    @staticmethod
    def parse_symbol(text: str) -> Market:
        return split_separated(text, "-")

    @classmethod
    def parse_listing(cls, payload: Any) -> list[Market]:
        if str(payload.get("code")) != "0":
            raise ValueError(f"code {payload.get('code')!r}: {payload.get('msg')!r}")
        return normalized_listing(
            ((i["instId"], i["baseCcy"], i["quoteCcy"]) for i in payload["data"]
             if i.get("state") == "live" and i.get("instType", "SPOT") == "SPOT"),
            cls.exchange)

    def __init__(self, config: ProducerConfig, markets: Iterable[Market] | None = None, **kw: Any) -> None:
        super().__init__(config, markets, **kw)
        self._next_id = 1
        self.requests: dict[str, list[str]] = {}  # request id -> instIds not yet acknowledged
        self.quote_channel_in_use: str = config.feed.quote_channel

    def keepalive_message(self) -> str:
        return "ping"

    def _request(self, inst_ids: list[str]) -> None:
        req_id = str(self._next_id)
        self._next_id += 1
        self.requests[req_id] = list(inst_ids)
        if self.quotes_on:
            quotes = self.quote_channel_in_use
            args = [{"channel": c, "instId": i} for i in inst_ids for c in ("trades", quotes)]
            self.queue(json.dumps({"id": req_id, "op": "subscribe", "args": args}),
                       *inst_ids, *((quotes, i) for i in inst_ids))
            return
        self.queue(json.dumps({"id": req_id, "op": "subscribe",
                               "args": [{"channel": "trades", "instId": i} for i in inst_ids]}), *inst_ids)

    def subscribe_messages(self) -> None:
        self.requests.clear()
        ids = list(self.by_raw)
        batch = self.limits_in_use.subscribe_batch
        for i in range(0, len(ids), batch):
            self._request(ids[i:i + batch])

    def handle(self, frame: bytes | str, received_ms: int) -> Iterable[Trade]:
        if frame == b"pong" or frame == "pong":
            self.pong()
            return ()
        try:
            msg = _loads(frame)
        except (ValueError, UnicodeDecodeError):
            return self._bad("malformed", "frame is not JSON", frame)
        if type(msg) is not dict:
            return self._bad("malformed", "frame is not an object", frame)
        data = msg.get("data")
        if data is not None:
            if self.quotes_on:
                arg = msg.get("arg")
                if isinstance(arg, dict) and arg.get("channel") == self.quote_channel_in_use:
                    return self._quotes(arg, data, frame, received_ms)
            return self._trades(msg, data, frame, received_ms)
        event = msg.get("event")
        if event == "subscribe":
            arg = msg.get("arg")
            inst = arg.get("instId") if isinstance(arg, dict) else None
            if self.quotes_on and isinstance(arg, dict) and arg.get("channel") == self.quote_channel_in_use:
                self.pending_acks.pop((self.quote_channel_in_use, inst), None)
                self.last_activity = time.monotonic()
                return ()
            if self.pending_acks.pop(inst, None) is not None:
                req = self.requests.get(str(msg.get("id")))
                if req is not None and inst in req:
                    req.remove(inst)
            self.last_activity = time.monotonic()
            return ()
        if event == "error":
            return self._error(msg)
        if event == "notice":
            self.log.warning("notice %s: %s: reconnecting now", msg.get("code"), str(msg.get("msg"))[:200])
            self.reconnect_request = Reconnect(f"notice {msg.get('code')}", immediate=True)
            return ()
        return self._bad("unknown", f"unknown message (event {event!r})", frame)

    def _error(self, msg: dict) -> Iterable[Trade]:
        text = str(msg.get("msg"))
        code = str(msg.get("code"))
        named = _INST.search(text)
        req = self.requests.pop(str(msg.get("id")), None)
        if named and named.group(1) in self.by_raw:
            bad = named.group(1)
            self.pending_acks.pop(bad, None)
            self.pending_acks.pop((self.quote_channel_in_use, bad), None)
            self.reject(bad, f"{code} {text}")
            rest = [i for i in (req or []) if i != bad and i in self.by_raw]
            for inst in rest:
                self.pending_acks.pop(inst, None)
                self.pending_acks.pop((self.quote_channel_in_use, inst), None)
            if rest:
                self._request(rest)
            return ()
        self.stats.errors += 1
        self.warn.warning("error", "error %s: %.200s", code, text)
        if req:  # the request failed as a whole and we cannot tell why: start over, with backoff
            self.reconnect_request = Reconnect(f"subscribe refused: {code} {text[:100]}")
        return ()

    def _quotes(self, arg: dict, data: object, frame: bytes | str, received_ms: int) -> Iterable[Trade]:
        inst = arg.get("instId")
        market = self.by_raw.get(inst) if type(inst) is str else None
        if market is None:
            return self._bad("unknown", "quote for an unsubscribed instrument", frame)
        if type(data) is not list:
            return self._bad("malformed", "quote push without a data list", frame)
        self.last_activity = time.monotonic()
        bbo = self.quote_channel_in_use == "bbo-tbt"
        for item in data:
            try:
                if bbo:
                    bids, asks, seq = item["bids"], item["asks"], item["seqId"]
                    # An empty side has no best price: None, counted as an invalid quote.
                    bid, bid_sz = (bids[0][0], bids[0][1]) if bids else (None, None)
                    ask, ask_sz = (asks[0][0], asks[0][1]) if asks else (None, None)
                else:
                    bid, bid_sz, ask, ask_sz, seq = item["bidPx"], item["bidSz"], item["askPx"], item["askSz"], None
                ts = int(item["ts"])
            except (KeyError, IndexError, TypeError, ValueError):
                self._bad("malformed", f"{self.quote_channel_in_use} push without a valid field", frame)
                continue
            if ts <= 0 or (seq is not None and (type(seq) is not int or seq < 0)):
                self._bad("malformed", f"{self.quote_channel_in_use} push with an invalid ts or seqId", frame)
                continue
            self.quote(market, bid, bid_sz, ask, ask_sz, ts, received_ms, seq, frame)
        return ()

    def _trades(self, msg: dict, data: object, frame: bytes | str, received_ms: int) -> Iterable[Trade]:
        arg = msg.get("arg")
        if not isinstance(arg, dict) or arg.get("channel") != "trades" or type(data) is not list:
            return self._bad("unknown", "push for an unknown channel", frame)
        out = []
        for item in data:
            try:
                raw, tid_text, price, size = item["instId"], item["tradeId"], item["px"], item["sz"]
                side, ts = _SIDES[item["side"]], int(item["ts"])
            except (KeyError, TypeError, ValueError):
                self._bad("malformed", "trade without a valid field", frame)
                continue
            market = self.by_raw.get(raw)
            if market is None:
                self._bad("unknown", "trade for an unsubscribed instrument", frame)
                continue
            if (type(tid_text) is not str or not tid_text.isdigit() or len(tid_text) > 30
                    or not is_decimal(price) or not is_decimal(size) or not price.strip("0.")
                    or not size.strip("0.") or ts <= 0):
                self._bad("malformed", "trade with an invalid field", frame)
                continue
            self.last_activity = time.monotonic()
            if not self.dedupe.is_new(raw, int(tid_text)):
                self.stats.duplicates += 1
                continue
            self.stats.trades += 1
            out.append(Trade("okx", market.symbol, raw, tid_text, price, size, side, ts, received_ms))
        return out
