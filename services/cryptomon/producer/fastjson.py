"""JSON parsing for the hot path: orjson when installed (3x faster here), else the stdlib.

websocket-client hands text frames over as bytes; the stdlib parser is much slower on bytes
(encoding detection) than on str, so the fallback decodes first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

loads: Callable[[str | bytes], Any]

try:
    import orjson

    loads = orjson.loads
    BACKEND = "orjson"
except ImportError:  # pragma: no cover - depends on the environment
    _json_loads = json.loads

    def loads(data: str | bytes) -> Any:
        return _json_loads(data.decode() if type(data) is bytes else data)

    BACKEND = "json"
