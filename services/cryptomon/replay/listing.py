"""Realistic symbol lists for the replay servers' REST endpoints.

About 536 base assets that trade (or traded) on the big spot exchanges, most liquid first,
paired with each exchange's usual quote assets, a few markets in a non-trading state (break,
suspend, cancel-only, delisted) and Binance's one non-ASCII symbol, so a whole-market pattern
like `*USDT` resolves to 500+ Binance markets the way it does against the real exchange.
Payload shapes follow each exchange's documented REST response.
"""

from __future__ import annotations

import json
from typing import Any

ASSETS: tuple[str, ...] = (
    "BTC", "ETH", "BNB", "SOL", "XRP", "DOGE", "ADA", "TRX", "AVAX", "SHIB", "DOT", "LINK", "TON",
    "MATIC", "POL", "BCH", "LTC", "NEAR", "UNI", "ICP", "APT", "PEPE", "ETC", "FET", "RNDR",
    "RENDER", "HBAR", "STX", "XLM", "ATOM", "IMX", "ARB", "FIL", "OP", "INJ", "VET", "MKR", "TAO",
    "SUI", "GRT", "AAVE", "THETA", "RUNE", "FTM", "ALGO", "SEI", "LDO", "FLOKI", "BONK", "JUP",
    "TIA", "WIF", "PYTH", "BEAM", "ENS", "FLOW", "QNT", "EGLD", "AXS", "SAND", "GALA", "MANA",
    "CHZ", "NEO", "KAVA", "XTZ", "EOS", "SNX", "CFX", "CRV", "MINA", "ROSE", "IOTA", "KLAY", "ZEC",
    "DYDX", "GNO", "ORDI", "1INCH", "CAKE", "COMP", "FXS", "BLUR", "WOO", "ZIL", "ENJ", "GMT",
    "ASTR", "BAT", "ANKR", "CELO", "HOT", "ZRX", "LRC", "QTUM", "SUSHI", "YFI", "RVN", "ICX",
    "OMG", "IOTX", "KSM", "WAVES", "ONE", "ZEN", "SC", "JST", "AUDIO", "STORJ", "GLM", "SKL",
    "ONT", "MASK", "BAND", "CELR", "UMA", "OCEAN", "API3", "RSR", "CTSI", "ARPA", "COTI", "DUSK",
    "LPT", "MTL", "NKN", "OGN", "PERP", "REN", "RLC", "SFP", "SXP", "TRB", "TWT", "VTHO", "WAXP",
    "XVS", "YGG", "ACH", "AGLD", "ALICE", "ALPHA", "AMP", "ANT", "ARDR", "ATA", "BAKE", "BEL",
    "BICO", "BNT", "BSW", "C98", "CHR", "CKB", "CLV", "CVC", "CVX", "DAR", "DASH", "DENT", "DGB",
    "DODO", "EDU", "ELF", "FIDA", "FIS", "FLM", "FORTH", "FRONT", "GAL", "GHST", "GTC", "HFT",
    "HIGH", "HOOK", "ID", "IDEX", "ILV", "IQ", "JASMY", "JOE", "KDA", "KEY", "KNC", "LEVER",
    "LINA", "LIT", "LOKA", "LOOM", "LQTY", "LSK", "MAGIC", "MAV", "MBOX", "MDT", "MOVR", "MULTI",
    "NMR", "NTRN", "OAX", "ORN", "OXT", "PHA", "PHB", "POLYX", "POND", "POWR", "PROM", "PUNDIX",
    "QI", "QKC", "RAD", "RARE", "RAY", "RDNT", "REEF", "REQ", "RIF", "SANTOS", "SLP", "SNT",
    "SPELL", "SSV", "STG", "STMX", "STPT", "STRAX", "SUN", "SYN", "SYS", "T", "TFUEL", "TLM",
    "TRU", "TVK", "UFT", "UNFI", "UTK", "VIB", "VIDT", "VOXEL", "WAN", "WIN", "WING", "WNXM",
    "XEC", "XNO", "XVG", "PEOPLE", "ACA", "ACE", "AERGO", "AEVO", "AI", "ALT", "ARK", "ARKM",
    "AXL", "BADGER", "BB", "BIGTIME", "BLZ", "BOME", "CATI", "CETUS", "CHESS", "COMBO", "CYBER",
    "DATA", "DEGO", "DEXE", "DF", "DIA", "DOGS", "DYM", "EIGEN", "ENA", "ETHFI", "FARM", "FIO",
    "FLUX", "FTT", "G", "GAS", "GLMR", "GMX", "GNS", "HIFI", "HMSTR", "IO", "JTO", "KAIA", "KMD",
    "LISTA", "LTO", "LUMIA", "MANTA", "MBL", "MEME", "METIS", "MOVE", "NFP", "NOT", "NULS", "OM",
    "OMNI", "ONG", "ORCA", "OSMO", "PENDLE", "PIXEL", "PORTAL", "PYR", "QUICK", "RONIN", "SAGA",
    "SCR", "SCRT", "SLF", "STRK", "SUPER", "TNSR", "TURBO", "USUAL", "VANRY", "VANA", "W", "WBTC",
    "WLD", "XAI", "ZK", "ZRO", "ACX", "ACT", "AEUR", "ALPINE", "AMB", "ASR", "ATM", "AVA", "BAR",
    "BETA", "BIFI", "BURGER", "CITY", "COS", "CREAM", "CTK", "CTXC", "DCR", "DOCK", "FOR", "FUN",
    "GFT", "HARD", "IRIS", "JUV", "KP3R", "LAZIO", "MDX", "MLN", "NBT", "NEXO", "OG", "PAXG",
    "PIVX", "PNT", "PORTO", "PSG", "REI", "SNM", "STEEM", "TKO", "TROY", "VGX", "VITE", "WRX",
    "XEM", "XMR", "AUCTION", "BTTC", "COOKIE", "DEGEN", "GOAT", "GRASS", "HYPE", "KAITO", "LAYER",
    "MEW", "MOODENG", "NEIRO", "NEIROETH", "PENGU", "PNUT", "POPCAT", "PRIME", "RIFT", "S",
    "SONIC", "SPX", "TRUMP", "TST", "VIRTUAL", "ZEREBRO", "AIXBT", "ANIME", "BERA", "BIO", "CGPT",
    "COW", "D", "ELDE", "FORM", "GUN", "HEI", "IP", "J", "KERNEL", "MUBARAK", "NIL", "PARTI",
    "RED", "SHELL", "SOLV", "THE", "TUT", "VELODROME", "VINE", "WAL", "XUSD", "ZKJ", "BROCCOLI",
    "BANANA", "BABY", "BMT", "EPIC", "GPS", "HAEDAL", "HOME", "HUMA", "INIT", "JELLYJELLY", "KMNO",
    "LA", "NXPC", "OBOL", "ORBS", "PROVE", "RESOLV", "SAHARA", "SIGN", "SKY", "SOPH", "SXT",
    "SYRUP", "TREE", "USD1", "WCT", "ZORA", "AIOZ", "ALCX", "AST", "BAL", "BRETT", "COQ", "CRO",
    "DRIFT", "GHX", "GRIFFAIN", "HNT", "KAS", "LUNA", "LUNC", "MEMEFI", "MOG", "MPL", "NOS", "OMI",
    "PEAQ", "PUFFER", "QANX", "REZ", "ROOT", "SAFE", "SATS", "SD", "SLERF", "SNEK", "TAIKO",
    "TOSHI", "TRAC", "UXLINK", "VELO", "WEN", "ZETA", "ZEUS", "AERO", "APE", "ASTER", "BARD",
    "BLUAI", "CTC", "DOLO", "ERA", "F", "FLUID", "HEMI", "HOLO", "KITE", "LINEA", "MIRA", "MITO",
    "OPEN", "PLUME", "PUMP", "SAPIEN", "SOMI", "TOWNS", "TRADOOR", "WLFI", "XPL", "YB", "ZBT",
    "0G", "2Z", "4", "ALLO", "AT", "AVNT", "BANK", "BREV", "CYS", "EDEN", "ENSO", "FF", "GIGGLE",
)

KRAKEN_V1 = {"BTC": "XBT", "DOGE": "XDG"}  # Kraken's REST/v1 names


def _pairs(quotes: dict[str, int]) -> list[tuple[int, str, str]]:
    """(rank, base, quote) for the top-N assets per quote asset."""
    out = []
    for quote, top in quotes.items():
        for rank, base in enumerate(ASSETS[:top]):
            if base != quote:
                out.append((rank, base, quote))
    return out


def binance() -> dict[str, Any]:
    """GET /api/v3/exchangeInfo (trimmed to the fields a client reads)."""
    symbols = []
    for rank, base, quote in _pairs({"USDT": len(ASSETS), "USDC": 80, "FDUSD": 40, "BTC": 120, "EUR": 25}):
        status = "BREAK" if rank % 37 == 36 else "HALT" if rank % 101 == 100 else "TRADING"
        symbols.append({"symbol": base + quote, "status": status, "baseAsset": base, "quoteAsset": quote,
                        "baseAssetPrecision": 8, "quoteAssetPrecision": 8, "isSpotTradingAllowed": True,
                        "isMarginTradingAllowed": rank < 100, "permissionSets": [["SPOT"]]})
    symbols.append({"symbol": "币安人生USDT", "status": "TRADING", "baseAsset": "币安人生", "quoteAsset": "USDT",
                    "baseAssetPrecision": 8, "quoteAssetPrecision": 8, "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False, "permissionSets": [["SPOT"]]})
    return {"timezone": "UTC", "serverTime": 1700000000000, "rateLimits": [], "exchangeFilters": [],
            "symbols": symbols}


def coinbase() -> list[dict[str, Any]]:
    """GET /products."""
    out = []
    for rank, base, quote in _pairs({"USD": 250, "USDT": 50, "EUR": 40}):
        disabled = rank % 23 == 22
        out.append({"id": f"{base}-{quote}", "base_currency": base, "quote_currency": quote,
                    "display_name": f"{base}/{quote}", "status": "delisted" if disabled else "online",
                    "trading_disabled": disabled, "cancel_only": False, "post_only": False, "limit_only": False,
                    "auction_mode": False, "fx_stablecoin": False})
    return out


def kraken() -> dict[str, Any]:
    """GET /0/public/AssetPairs: keyed by pair code, v1 names in `wsname`."""
    result = {}
    for rank, base, quote in _pairs({"USD": 150, "USDT": 60, "EUR": 40}):
        b, q = KRAKEN_V1.get(base, base), KRAKEN_V1.get(quote, quote)
        code = f"X{b}Z{q}" if rank < 10 and quote in ("USD", "EUR") else f"{b}{q}"
        status = "cancel_only" if rank % 29 == 28 else "online"
        result[code] = {"altname": f"{b}{q}", "wsname": f"{b}/{q}", "base": f"X{b}" if rank < 10 else b,
                        "quote": f"Z{q}" if q in ("USD", "EUR") else q, "status": status,
                        "fees": [[0, 0.4]], "fees_maker": [[0, 0.25]]}
    return {"error": [], "result": result}


def okx() -> dict[str, Any]:
    """GET /api/v5/public/instruments?instType=SPOT."""
    data = []
    for rank, base, quote in _pairs({"USDT": 300, "USDC": 50, "BTC": 30}):
        state = "suspend" if rank % 31 == 30 else "live"
        data.append({"instType": "SPOT", "instId": f"{base}-{quote}", "baseCcy": base, "quoteCcy": quote,
                     "state": state, "ruleType": "normal"})
    return {"code": "0", "msg": "", "data": data}


def bybit() -> dict[str, Any]:
    """GET /v5/market/instruments-info?category=spot."""
    rows = []
    for rank, base, quote in _pairs({"USDT": 400, "USDC": 40}):
        status = "PreLaunch" if rank % 41 == 40 else "Trading"
        rows.append({"symbol": base + quote, "baseCoin": base, "quoteCoin": quote, "status": status,
                     "innovation": "0", "marginTrading": "none"})
    return {"retCode": 0, "retMsg": "OK", "result": {"category": "spot", "list": rows},
            "retExtInfo": {}, "time": 1700000000000}


def body(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()
