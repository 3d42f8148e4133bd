"""The dashboard's own variables: the spread policy (threshold, staleness, compared exchanges)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from cryptomon.dashboard.cli import DashboardSettings
from cryptomon.dashboard.state import DEFAULT_STALE_AFTER_MS, SpreadPolicy
from cryptomon.kafka_settings import ConfigError


def test_defaults_compare_every_exchange_with_the_jobs_threshold() -> None:
    settings = DashboardSettings.from_env({})
    assert settings.spread_exchanges == () and settings.spread_thresholds == ()
    assert settings.policy() == SpreadPolicy(stale_after_ms=DEFAULT_STALE_AFTER_MS, threshold_usd=Decimal(50))


def test_spread_variables_make_the_policy() -> None:
    settings = DashboardSettings.from_env({
        "DASHBOARD_STALE_AFTER_S": "7.5", "DASHBOARD_SPREAD_THRESHOLD_USD": " 20.50 ",
        "DASHBOARD_SPREAD_THRESHOLDS": "eth=5, SOL=0.5", "DASHBOARD_SPREAD_EXCHANGES": "OKX, kraken,binance,mock-x"})
    policy = settings.policy()
    assert policy.stale_after_ms == 7500 and policy.threshold_usd == Decimal("20.50")
    assert policy.thresholds == (("ETH", Decimal(5)), ("SOL", Decimal("0.5")))
    assert policy.exchanges == ("binance", "kraken", "mock-x", "okx")
    assert policy.threshold_for("sol") == Decimal("0.5") and policy.threshold_for("BTC") == Decimal("20.50")
    # The job's JSON form works too.
    json_form = DashboardSettings.from_env({"DASHBOARD_SPREAD_THRESHOLDS": '{"ETH": 5, "SOL": "0.5"}'})
    assert json_form.spread_thresholds == policy.thresholds


@pytest.mark.parametrize("name, value, says", [
    ("DASHBOARD_SPREAD_EXCHANGES", "binance", "fewer than two"),
    ("DASHBOARD_SPREAD_EXCHANGES", "okx,kraken,okx", "okx given twice"),
    ("DASHBOARD_SPREAD_EXCHANGES", "binance,co inbase", "'co inbase' is not an exchange name"),
    ("DASHBOARD_SPREAD_THRESHOLD_USD", "0", "not a positive number"),
    ("DASHBOARD_SPREAD_THRESHOLD_USD", "fifty", "not a number"),
    ("DASHBOARD_SPREAD_THRESHOLD_USD", "inf", "not a positive number"),
    ("DASHBOARD_SPREAD_THRESHOLDS", "ETH-USDT=5", "per asset"),
    ("DASHBOARD_SPREAD_THRESHOLDS", "ETH=5,eth=6", "ETH is given twice"),
    ("DASHBOARD_SPREAD_THRESHOLDS", "ETH=", "DASHBOARD_SPREAD_THRESHOLDS[ETH]"),
    ("DASHBOARD_SPREAD_THRESHOLDS", "{not json", "not a JSON object"),
    ("DASHBOARD_SPREAD_THRESHOLDS", '{"ETH": -1}', "not a positive number"),
    ("DASHBOARD_STALE_AFTER_S", "0", "DASHBOARD_STALE_AFTER_S"),
    ("DASHBOARD_STALE_AFTER_S", "soon", "DASHBOARD_STALE_AFTER_S"),
])
def test_bad_spread_settings_name_the_variable_and_the_problem(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=name.replace("[", r"\[")) as err:
        DashboardSettings.from_env({name: value})
    assert says in str(err.value)
