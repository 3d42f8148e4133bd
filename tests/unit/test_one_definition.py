"""A value shared by several roles has one definition: the trades topic renamed in the
inventory reaches the producers' environment, both Flink jobs' settings, the topic list and
the ACLs, and its default name is written in one place only."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests" / "fixtures" / "ansible" / "render_one_value.yml"


def render(tmp_path: Path, **extra: str) -> Path:
    variables = {"render_out": str(tmp_path), "ansible_python_interpreter": sys.executable,
                 "cryptomon_templates_dir": str(REPO / "templates"), **extra}
    run_playbook(PLAYBOOK, inventory=REPO / "inventory" / "example", extra_vars=variables).assert_ok()
    return tmp_path


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return dict(pairs)


def test_renamed_trades_topic_reaches_every_consumer_of_it(tmp_path: Path) -> None:
    out = render(tmp_path, cryptomon_trades_topic="desk7.trades")
    assert env_file(out / "kafka.env")["KAFKA_TRADES_TOPIC"] == "desk7.trades"
    jobs = sorted(out.glob("*_detector.env"))
    assert [p.stem for p in jobs] == ["anomaly_detector", "arbitrage_detector"]
    for job in jobs:
        assert env_file(job)["KAFKA_TRADES_TOPIC"] == "desk7.trades", job.name
    kafka = json.loads((out / "kafka.json").read_text())
    assert "desk7.trades" in [t["name"] for t in kafka["topics"]]
    on_topic = {a["principal"] for a in kafka["acls"] if a["resource_name"] == "desk7.trades"}
    assert {"producer", "flink", "dashboard"} <= on_topic
    everything = "".join(p.read_text() for p in out.iterdir())
    assert "trades.raw" not in everything


def test_default_trades_topic_name_is_written_once() -> None:
    """Roles, operator templates and inventories name it through cryptomon_trades_topic only."""
    places = [p for top in ("roles", "templates", "inventory", "playbooks") for p in (REPO / top).rglob("*")
              if p.is_file() and p.suffix in {".yml", ".yaml", ".j2"} and "trades.raw" in p.read_text()]
    assert [str(p.relative_to(REPO)) for p in places] == ["roles/cryptomon/defaults/main.yml"]


def test_renamed_quotes_topic_reaches_producers_quote_job_topic_list_and_acls(tmp_path: Path) -> None:
    out = render(tmp_path, cryptomon_quotes_topic="desk7.quotes")
    assert env_file(out / "kafka.env")["KAFKA_QUOTES_TOPIC"] == "desk7.quotes"  # the producers read it there
    assert env_file(out / "quote_arbitrage.env")["KAFKA_QUOTES_TOPIC"] == "desk7.quotes"
    kafka = json.loads((out / "kafka.json").read_text())
    assert "desk7.quotes" in [t["name"] for t in kafka["topics"]]
    grants = {(a["principal"], op) for a in kafka["acls"] if a["resource_name"] == "desk7.quotes"
              for op in a["operations"]}
    assert grants == {("producer", "write"), ("producer", "describe"), ("flink", "read"), ("flink", "describe")}
    everything = "".join(p.read_text() for p in out.iterdir())
    assert "quotes.raw" not in everything


def test_default_quotes_topic_name_is_written_once() -> None:
    places = [p for top in ("roles", "templates", "inventory", "playbooks") for p in (REPO / top).rglob("*")
              if p.is_file() and p.suffix in {".yml", ".yaml", ".j2"} and "quotes.raw" in p.read_text()]
    assert [str(p.relative_to(REPO)) for p in places] == ["roles/cryptomon/defaults/main.yml"]
