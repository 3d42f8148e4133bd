"""Checks shared by the services' command lines: every bad flag or variable is one line on
stderr and exit status 2 (restarting cannot fix it), never a traceback."""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

from cryptomon.kafka_settings import ConfigError

T = TypeVar("T")
EXIT_CONFIG = 2
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (journald shows each line as an entry)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message} (see --help)\n")


def log_level(raw: str | None, source: str, default: str = "INFO") -> str:
    level = (raw or "").strip().upper() or default
    if level not in LOG_LEVELS:
        raise ConfigError(f"{source}: {raw!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


# --- argparse types: a ValueError/ArgumentTypeError becomes "argument --x: <message>" ----------

def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not greater than 0")
    return value


def non_negative_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def positive_int(text: str) -> int:
    if not re.fullmatch(r"\s*[0-9]+\s*", text) or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number greater than 0")
    return int(text)


def port(text: str) -> int:
    """1..65535."""
    if not re.fullmatch(r"\s*[0-9]{1,5}\s*", text) or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return int(text)


def port_or_zero(text: str) -> int:
    """0 (any free port, printed at start) or 1..65535."""
    return 0 if text.strip() == "0" else port(text)


def listen_address(text: str) -> str:
    """An IP address or a host name to bind to."""
    value = text.strip()
    try:
        ipaddress.ip_address(value.strip("[]"))
        return value
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address or host name")
    return value


def from_env(check: Callable[[str], T], env_value: str, name: str) -> T:
    """Run an argparse type on an environment variable; errors name the variable."""
    try:
        return check(env_value)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise ConfigError(f"{name}: {exc}") from None


def check_file_location(name: str, path: Path) -> None:
    """A file the service will create or rewrite: not a directory, and under a directory (or a
    path that can still be created as one). Catches /etc/passwd/state.json at start."""
    if path.is_dir():
        raise ConfigError(f"{name}: {str(path)!r} is a directory, not a file")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"{name}: cannot create {str(path)!r}: {str(ancestor)!r} is not a directory")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise ConfigError(f"{name}: {str(path)!r} is not readable and writable")
    if not path.exists() and not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"{name}: cannot create {str(path)!r}: {str(ancestor)!r} is not writable")
