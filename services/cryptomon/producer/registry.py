"""The exchange registry: the one place that names every feed.

Adding an exchange = one adapter module in this package (a `WebSocketAdapter` subclass that
describes the exchange and speaks its protocol), one replay module in `cryptomon.replay`, and
one line below. The CLI's choices, ProducerConfig, the replay servers' CLI and the deployment
(through `python -m cryptomon.producer.registry --json`) all read this table.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Adapter

# name -> "module:Class". Imported lazily: a process loads only the adapter it runs.
ADAPTERS: dict[str, str] = {
    "binance": "cryptomon.producer.binance:BinanceAdapter",
    "coinbase": "cryptomon.producer.coinbase:CoinbaseAdapter",
    "kraken": "cryptomon.producer.kraken:KrakenAdapter",
    "okx": "cryptomon.producer.okx:OkxAdapter",
    "bybit": "cryptomon.producer.bybit:BybitAdapter",
    "mock": "cryptomon.producer.mock:MockAdapter",  # imitates the real ones by name
}


def load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def exchange_names(real_only: bool = False) -> tuple[str, ...]:
    """Every feed name; `real_only` leaves out the mock (the exchanges it may imitate)."""
    return tuple(n for n in ADAPTERS if not (real_only and n == "mock"))


def adapter_class(name: str) -> type[Adapter]:
    try:
        path = ADAPTERS[name]
    except KeyError:
        raise KeyError(f"unknown exchange {name!r} (known: {', '.join(ADAPTERS)})") from None
    return load(path)


def replay_class(name: str) -> Any:
    """The replay server standing in for exchange `name`."""
    cls = adapter_class(name)
    path = getattr(cls, "replay_server", None)
    if path is None:
        raise KeyError(f"{name!r} has no replay server")
    return load(path)


def describe(real_only: bool = False) -> list[dict[str, Any]]:
    return [adapter_class(n).describe() for n in exchange_names(real_only)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cryptomon.producer.registry",
        description="List the exchanges the producer knows, with their variables and defaults.")
    parser.add_argument("--json", action="store_true", help="machine-readable (for Ansible and tests)")
    parser.add_argument("--real", action="store_true", help="leave out the mock feed")
    args = parser.parse_args(argv)
    entries = describe(args.real)
    if args.json:
        json.dump(entries, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        for e in entries:
            if e["kind"] == "mock":
                print(f"{e['name']:10} mock feed imitating {', '.join(e['imitates'])}")
            else:
                print(f"{e['name']:10} {e['symbols_var']}={','.join(e['default_symbols'])} "
                      f"{e['stream_url_var']}={e['default_stream_url']} replay port {e['replay_default_port']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
