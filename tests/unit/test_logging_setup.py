"""One log format for every service; a timestamp only when not under journald (issue 15, defect 12)."""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptomon.dashboard.cli import build_command
from cryptomon.logging_setup import BASE_FORMAT, log_format, setup_logging, under_journald

REPO = Path(__file__).resolve().parents[2]
TIMED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR) cryptomon[\w.]*: \S")
PLAIN = re.compile(r"^(DEBUG|INFO|WARNING|ERROR) cryptomon[\w.]*: \S")


def journal_stream_of(path: Path) -> str:
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


@pytest.fixture(autouse=True)
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def emit(tmp_path: Path, env: dict[str, str]) -> str:
    out = tmp_path / "stderr.log"
    with out.open("w") as stream:
        setup_logging("INFO", stream=stream, env={k: v.replace("@", journal_stream_of(out)) for k, v in env.items()})
        logging.getLogger("cryptomon.test").info("hello %s", "world")
        logging.getLogger("cryptomon.test").debug("not shown")
    return out.read_text()


def test_timestamp_when_not_under_journald(tmp_path: Path) -> None:
    [line] = emit(tmp_path, {}).splitlines()
    assert TIMED.match(line) and line.endswith("INFO cryptomon.test: hello world"), line


def test_no_timestamp_under_journald(tmp_path: Path) -> None:
    [line] = emit(tmp_path, {"JOURNAL_STREAM": "@"}).splitlines()
    assert line == "INFO cryptomon.test: hello world"


def test_inherited_journal_stream_on_another_file_still_gets_a_timestamp(tmp_path: Path) -> None:
    [line] = emit(tmp_path, {"JOURNAL_STREAM": "1:2"}).splitlines()
    assert TIMED.match(line), line


def test_stream_without_descriptor_trusts_the_variable() -> None:
    assert under_journald(io.StringIO(), {"JOURNAL_STREAM": "8:123"})
    assert not under_journald(io.StringIO(), {})
    assert log_format(io.StringIO(), {"JOURNAL_STREAM": "8:123"}) == BASE_FORMAT


# --- every service uses it -----------------------------------------------------------------------

def start(module: str, args: list[str], stderr: Path, journald: bool) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DISCORD_", "KAFKA_", "ALERTER_", "BINANCE_", "JOURNAL_", "LOG_LEVEL"))}
    env["PYTHONPATH"] = str(REPO / "services")
    stderr.touch()
    if journald:
        env["JOURNAL_STREAM"] = journal_stream_of(stderr)
    with stderr.open("a") as err:
        return subprocess.Popen([sys.executable, "-m", module, *args], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, cwd=stderr.parent)


def first_log_line(proc: subprocess.Popen, stderr: Path, want: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            lines = [ln for ln in stderr.read_text().splitlines() if want in ln]
            if lines:
                return lines[0]
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    raise AssertionError(f"no line with {want!r}: {stderr.read_text()[-2000:]}")


SERVICES = [
    ("cryptomon.producer", ["mock", "--stdout"], "starting mock producer"),
    ("cryptomon.alerter", ["--stdin"], "starting:"),
    ("cryptomon.replay", ["binance", "--port", "0"], "replay server on"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("module, args, want", SERVICES)
@pytest.mark.parametrize("journald", [False, True])
def test_every_service_logs_in_the_shared_format(module, args, want, journald, tmp_path) -> None:
    stderr = tmp_path / "stderr.log"
    line = first_log_line(start(module, args, stderr, journald), stderr, want)
    assert (PLAIN if journald else TIMED).match(line), line


@pytest.mark.parametrize("journald", [False, True])
def test_dashboard_hands_the_format_to_streamlit(journald: bool, tmp_path: Path, monkeypatch) -> None:
    """Streamlit's own loggers get the same format (`--logger.messageFormat`); app.py sets up ours."""
    if journald:
        monkeypatch.setenv("JOURNAL_STREAM", "8:1")
        monkeypatch.setattr(sys, "stderr", io.StringIO())  # no descriptor: the variable decides
    else:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    cmd = build_command(8501, "127.0.0.1", [])
    fmt = cmd[cmd.index("--logger.messageFormat") + 1]
    assert fmt == (BASE_FORMAT if journald else "%(asctime)s " + BASE_FORMAT)
    assert "setup_logging(" in (REPO / "services/cryptomon/dashboard/app.py").read_text()
