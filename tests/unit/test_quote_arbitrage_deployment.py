"""The flink_jobs role deploys the quote arbitrage job like the other two: its settings file,
rendered from the role's flink_jobs_quote_arbitrage_* knobs, is accepted by the job itself and
says what the knobs say; the stack's one demo switch turns on both arbitrage jobs' demo modes."""

from __future__ import annotations

import importlib.util
import sys
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import yaml
from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests" / "fixtures" / "ansible" / "render_one_value.yml"
JOBS = REPO / "flink_jobs"
sys.path.insert(0, str(JOBS))


def load_job() -> ModuleType:
    spec = importlib.util.spec_from_file_location("job_quote_arbitrage_deploy", JOBS / "quote_arbitrage.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


qa = load_job()


def render(tmp_path: Path, **extra: object) -> Path:
    """Every job's <name>.env as the role renders it for inventory/example, plus `extra`."""
    variables = {"render_out": str(tmp_path), "ansible_python_interpreter": sys.executable,
                 "cryptomon_templates_dir": str(REPO / "templates"), **extra}
    run_playbook(PLAYBOOK, inventory=REPO / "inventory" / "example", extra_vars=variables).assert_ok()
    return tmp_path


def env_file(path: Path) -> dict[str, str]:
    """The module's reading of <name>.env: KEY=value lines, no quoting."""
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def job_env(out: Path) -> dict[str, str]:
    """quote_arbitrage.env, with the Flink hosts' password file and CA standing in files of the
    test (the job checks that both are readable; this machine need not be a Flink host)."""
    env = env_file(out / "quote_arbitrage.env")
    assert env["KAFKA_PASSWORD_FILE"] == "/etc/flink/secrets/kafka-password"  # named, never inlined
    assert env["KAFKA_SSL_CA_LOCATION"] == "/etc/cryptomon/tls/ca.crt"
    secret = out / "kafka-password"
    secret.write_text("s3cret\n")
    ca = out / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    return env | {"KAFKA_PASSWORD_FILE": str(secret), "KAFKA_SSL_CA_LOCATION": str(ca)}


def role_job(name: str) -> dict:
    jobs = yaml.safe_load((REPO / "roles" / "flink_jobs" / "defaults" / "main.yml").read_text())["flink_jobs_list"]
    return next(job for job in jobs if job["name"] == name)


def test_the_job_is_declared_like_the_other_two() -> None:
    job, other = role_job("quote_arbitrage"), role_job("arbitrage_detector")
    assert job["file"] == "quote_arbitrage.py" and (JOBS / job["file"]).is_file()
    assert job["pyfs"] == other["pyfs"]  # flink_common and the services' kafka_settings
    assert (job["parallelism"], job["enabled"]) == (1, True)
    # Every variable it sets is one the job reads.
    assert all(key.startswith("QUOTE_ARBITRAGE_") for key in job["env"])


def test_default_settings_are_the_jobs_own_defaults(tmp_path: Path) -> None:
    env = job_env(render(tmp_path))
    assert env["KAFKA_QUOTES_TOPIC"] == "quotes.raw"
    assert env["KAFKA_ARBITRAGE_TOPIC"] == "signals.arbitrage"
    args = qa.parse_args([], env)
    assert (args.demo, args.min_net_bps, args.min_profit_usd, args.min_notional_usd, args.hysteresis_bps) == (
        False, Decimal(10), Decimal(0), Decimal(100), Decimal(0))
    assert args.taker_fees_bps == qa.parse_fee_table("", "fees")  # the built-in table, nothing laid over it
    assert (args.default_taker_fee_bps, args.max_quote_age_ms, args.max_quote_ages_ms, args.exchanges) == (
        Decimal(10), 2000, {}, [])
    assert args.coalesce_ms == qa.DEFAULT_COALESCE_MS
    # group and transactional ids under the prefix the Flink user's ACLs grant
    assert args.group_id == "cryptomon-flink-quote-arbitrage"
    assert env["KAFKA_USERNAME"] == "cryptomon-flink" and "KAFKA_PASSWORD" not in env


def test_every_knob_reaches_the_job(tmp_path: Path) -> None:
    env = job_env(render(tmp_path, flink_jobs_quote_arbitrage_min_net_bps=7.5,
                          flink_jobs_quote_arbitrage_min_profit_usd=2,
                          flink_jobs_quote_arbitrage_min_notional_usd=250,
                          flink_jobs_quote_arbitrage_hysteresis_bps=2.5,
                          flink_jobs_quote_arbitrage_taker_fees_bps={"kraken": 26, "okx": 8.5},
                          flink_jobs_quote_arbitrage_default_taker_fee_bps=15,
                          flink_jobs_quote_arbitrage_max_quote_age_ms=1500,
                          flink_jobs_quote_arbitrage_max_quote_ages_ms={"kraken": 3000},
                          flink_jobs_quote_arbitrage_exchanges=["okx", "binance", "kraken"],
                          flink_jobs_quote_arbitrage_coalesce_ms=0))
    assert env["QUOTE_ARBITRAGE_TAKER_FEES_BPS"] == "kraken=26,okx=8.5"
    rules = qa.rules_from_args(qa.parse_args([], env))
    assert (rules.min_net_bps, rules.min_profit_usd, rules.min_notional_usd, rules.hysteresis_bps) == (
        Decimal("7.5"), Decimal(2), Decimal(250), Decimal("2.5"))
    assert (rules.fees_bps["kraken"], rules.fees_bps["okx"], rules.fees_bps["coinbase"]) == (
        Decimal(26), Decimal("8.5"), Decimal(60))
    assert (rules.default_fee_bps, rules.default_max_age_ms, rules.max_age_ms) == (Decimal(15), 1500, {"kraken": 3000})
    assert qa.parse_args([], env).exchanges == ["binance", "kraken", "okx"]
    assert qa.parse_args([], env).coalesce_ms == 0


def test_one_demo_switch_turns_on_both_arbitrage_jobs(tmp_path: Path) -> None:
    out = render(tmp_path, cryptomon_demo_mode=True, flink_jobs_quote_arbitrage_min_net_bps=25)
    assert env_file(out / "arbitrage_detector.env")["ARBITRAGE_DEMO_MODE"] == "true"
    env = job_env(out)
    assert env["QUOTE_ARBITRAGE_DEMO_MODE"] == "true"
    rules = qa.rules_from_args(qa.parse_args([], env))
    # demo: any net gain after fees opens an episode, whatever the thresholds say
    assert rules.demo and (rules.min_net_bps, rules.min_profit_usd) == (Decimal(0), Decimal(0))
