"""cryptomon live dashboard (Streamlit): quote arbitrage opportunities, spread matrix, best spreads,
alert history, latest trades, and the pipeline's health from Prometheus (DASHBOARD_PROMETHEUS_URL).

Run through `cryptomon-dashboard` (it execs Streamlit's `run` on this file, through serve.py).
One Kafka reader thread per server process (st.cache_resource) feeds a MarketState; a fragment
re-renders from a snapshot of it every DASHBOARD_REFRESH_S seconds. Likewise one Prometheus
poller thread per process (health.py) keeps the latest pipeline-health report, which two more
fragments show (a line at the top, the tables at the bottom). Problems show as a status banner,
never as a stack trace. Everything shown is computed in state.py and health.py; this file only
lays it out.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

try:
    import cryptomon  # noqa: F401 - installed package
except ImportError:  # running from a checkout: streamlit puts only this file's dir on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import altair as alt
import pandas as pd
import streamlit as st

from cryptomon.dashboard import metrics as dashboard_metrics
from cryptomon.dashboard.cli import DashboardSettings
from cryptomon.dashboard.feed import KafkaFeed
from cryptomon.dashboard.health import (
    MIN_REFRESH_S,
    HealthLevel,
    HealthPoller,
    HealthReport,
    alert_table,
    alerter_table,
    flink_table,
    legend,
    producer_table,
    redact_url,
    summary_line,
)
from cryptomon.dashboard.state import (
    ALERT_COLUMNS,
    NUMERIC_COLUMNS,
    PRICE_COLUMNS,
    MarketState,
    Snapshot,
    SpreadPolicy,
    StyledTable,
    alert_rows,
    column_widths,
    markdown_escape,
    markdown_inline_escape,
    matrix_table,
    opportunity_table,
    policy_caption,
    price_rows,
    summary_table,
)
from cryptomon.kafka_settings import ConfigError, KafkaSettings
from cryptomon.logging_setup import setup_logging


def _settings() -> DashboardSettings:
    # cryptomon-dashboard checked the variables before starting Streamlit; if the app is run
    # some other way, a bad value falls back to the defaults here and shows in the page.
    try:
        return DashboardSettings.from_env()
    except ConfigError:
        return DashboardSettings()


SETTINGS = _settings()
REFRESH_S = SETTINGS.refresh_s
# How often Prometheus is asked: it scrapes every 15 s in the bundle, so asking at every page
# refresh would show nothing new.
HEALTH_REFRESH_S = max(REFRESH_S, MIN_REFRESH_S)


@st.cache_resource(show_spinner=False)
def get_feed(settings: KafkaSettings, policy: SpreadPolicy) -> KafkaFeed:
    """One reader per distinct configuration, shared by every browser session."""
    return KafkaFeed(settings, MarketState(policy)).start()


def status_banner(snap: Snapshot) -> None:
    s = snap.status
    if s.state == "unreachable":
        st.error(f"Kafka unreachable, retrying… ({s.detail})" if s.detail else "Kafka unreachable, retrying…",
                 icon="⚠️")
    elif s.state == "connecting":
        st.info("Connecting to Kafka…", icon="⏳")
    elif s.state == "waiting":
        st.info(f"Waiting for data… {s.detail}".strip(), icon="⏳")
    if snap.missing_topics and s.state == "live":
        st.warning("Topics not created yet: " + ", ".join(snap.missing_topics))


def styled_table(table: StyledTable) -> None:
    """A static HTML table (st.table): every column as wide as its text, nothing cut off, and
    the per-cell CSS of state.py applied through a pandas Styler."""
    # st.table renders cell text as Markdown; the text is escaped so it shows as computed.
    df = pd.DataFrame([[markdown_escape(c) for c in row] for row in table.rows],
                      columns=[markdown_escape(c) for c in table.columns])
    css = pd.DataFrame(list(table.styles), columns=df.columns, index=df.index)
    # No line breaks in a cell (a price split over two lines is hard to read): the Markdown
    # container inside each cell wraps at 400 px by default.
    nowrap = "white-space: nowrap; max-width: none"
    styler = (df.style.apply(lambda _: css, axis=None)
              .set_table_styles([{"selector": sel, "props": nowrap} for sel in ("th", "td", "th div", "td div")])
              .hide(axis="index"))
    st.table(styler, width="content", hide_index=True)


def opportunities_section(snap: Snapshot) -> None:
    st.subheader("Opportunities")
    st.caption("Executable quote arbitrage (the quote-arbitrage job): one row per episode, the open ones first "
               "(red, newest first), then the recently closed ones (grey). Buy at the best ask, sell at the best "
               "bid; net after both taker fees, in bps of the buy price (a closed row: its peak); size is what "
               "both books hold at those prices.")
    if not snap.opportunities:
        st.caption("No opportunity yet.")
        return
    styled_table(opportunity_table(snap.opportunities, snap.now_ms))


def matrix_section(snap: Snapshot) -> None:
    st.subheader("Spread matrix")
    st.caption(policy_caption(snap.policy))
    if not snap.matrix.assets:
        st.caption("Waiting for trades in USD, USDT or USDC…")
        return
    styled_table(matrix_table(snap.matrix))


def summary_section(snap: Snapshot) -> None:
    st.subheader("Best spread per asset")
    if not snap.matrix.assets:
        st.caption("Waiting for prices…")
        return
    styled_table(summary_table(snap.matrix))


def spread_chart_section(snap: Snapshot) -> None:
    st.subheader("Best spread, last 15 minutes")
    st.caption("Highest minus lowest fresh price per asset, in USD, one point per second.")
    if not snap.spreads:
        st.caption("Waiting for fresh prices from two exchanges…")
        return
    chart = (
        alt.Chart(pd.DataFrame(snap.spreads))
        .mark_line(point=alt.OverlayMarkDef(size=12))
        .encode(
            x=alt.X("time:T", title="time (UTC)", axis=alt.Axis(format="%H:%M:%S", labelOverlap=True)),
            y=alt.Y("spread_usd:Q", title="best spread (USD)"),
            color=alt.Color("asset:N", title="asset"),
            tooltip=["asset", alt.Tooltip("time:T", format="%H:%M:%S"), alt.Tooltip("spread_usd:Q", format=",.2f"),
                     alt.Tooltip("spread_bps:Q", format=".2f"), "buy", "sell"],
        )
        .properties(height=300)
    )
    st.altair_chart(chart, width="stretch")


def trades_section(snap: Snapshot) -> None:
    with st.expander("Latest trade per exchange and symbol (every quote)"):
        if not snap.prices:
            st.caption("Waiting for trades…")
            return
        rows = price_rows(snap.prices)
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="content",
                     column_config=_column_config(rows, PRICE_COLUMNS))


def _column_config(rows: list[dict[str, str]], columns: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """Text columns as wide as their content (state.column_widths): no cell is cut off."""
    return {label: st.column_config.TextColumn(label, width=width,
                                               alignment="right" if label in NUMERIC_COLUMNS else "left")
            for label, width in column_widths(rows, columns).items()}


def alerts_section(snap: Snapshot) -> None:
    st.subheader("Alert history")
    if not snap.alerts:
        st.caption("No alerts yet.")
        return
    rows = alert_rows(snap.alerts)
    st.dataframe(pd.DataFrame(rows), hide_index=True, height=min(420, 38 + 35 * len(rows)),
                 column_config=_column_config(rows, ALERT_COLUMNS))


def _count_health_query(report: HealthReport) -> None:
    metrics = dashboard_metrics.running()
    if metrics is not None:
        metrics.observe_query(report.outcome, report.seconds)


@st.cache_resource(show_spinner=False)
def get_health_poller(url: str, every_s: float) -> HealthPoller:
    """One Prometheus poller per URL, shared by every browser session; counted on /metrics."""
    return HealthPoller(url, every_s, on_report=_count_health_query).start()


# Material icons come with Streamlit's own fonts; emoji need a font the viewer may not have.
HEALTH_BANNER = {HealthLevel.GREEN: (st.success, ":material/check_circle:"),
                 HealthLevel.AMBER: (st.warning, ":material/warning:"),
                 HealthLevel.RED: (st.error, ":material/error:")}


def health_banner(report: HealthReport, prefix: str = "Pipeline health: ") -> None:
    show, icon = HEALTH_BANNER[report.level]
    show(markdown_inline_escape(prefix + summary_line(report)), icon=icon)


def health_section(url: str, poller: HealthPoller | None) -> None:
    st.subheader("Pipeline health")
    if poller is None:
        st.caption("Not configured: set DASHBOARD_PROMETHEUS_URL to Prometheus' base URL (e.g. "
                   "http://127.0.0.1:9090) to see the producers, Flink jobs, alerter lag and firing alerts here.")
        return
    report = poller.latest()
    if report is None:
        st.info(f"Asking Prometheus at {redact_url(url)}…", icon=":material/hourglass_empty:")
        return
    if report.outcome != "ok":
        health_banner(report, prefix="")
        return
    st.caption(markdown_inline_escape(legend(url, report, HEALTH_REFRESH_S)))
    tables = (("Producers", report.producers, producer_table, "No producer targets (scrape job cryptomon_producer)."),
              ("Flink jobs", report.flink, flink_table, "No Flink jobs reported."),
              ("Alerter", report.alerters, alerter_table, "No alerter target (scrape job cryptomon_alerter)."))
    for title, rows, table, none in tables:
        st.markdown(f"**{title}**")
        if rows:
            styled_table(table(rows))
        else:
            st.caption(none)
    st.markdown("**Firing alerts**")
    if report.alerts:
        styled_table(alert_table(report.alerts, report.fetched_at))
    else:
        st.caption("No alert is firing.")


def render(feed: KafkaFeed) -> None:
    snap = feed.state.snapshot()
    status_banner(snap)
    # Full-width sections: the tables grow with the number of exchanges.
    opportunities_section(snap)
    matrix_section(snap)
    summary_section(snap)
    spread_chart_section(snap)
    alerts_section(snap)
    trades_section(snap)
    extra = f" · {snap.malformed} unreadable records skipped" if snap.malformed else ""
    st.caption(f"{snap.trades_seen} trades read{extra} · refreshes every {REFRESH_S:g}s")


def main() -> None:
    # The feed thread's lines (cryptomon.*) in the services' format; Streamlit's loggers do not
    # propagate to the root logger, they get the same format through --logger.messageFormat.
    setup_logging(SETTINGS.log_level)
    st.set_page_config(page_title="cryptomon", page_icon="📈", layout="wide")
    st.title("cryptomon · live market monitor")
    try:
        DashboardSettings.from_env()
        settings = KafkaSettings.from_env()
    except ConfigError as exc:
        st.error(f"Configuration error: {exc}")
        return
    try:  # already running when started by cryptomon-dashboard; this covers a bare `streamlit run`
        dashboard_metrics.ensure_started(SETTINGS.metrics, prometheus_configured=bool(SETTINGS.prometheus_url))
    except ConfigError as exc:
        st.warning(f"No /metrics endpoint: {exc}")
    feed = get_feed(settings, SETTINGS.policy())
    url = SETTINGS.prometheus_url
    poller = get_health_poller(url, HEALTH_REFRESH_S) if url else None

    @st.fragment(run_every=REFRESH_S)
    def health_line() -> None:
        report = poller.latest() if poller is not None else None
        if report is not None:
            health_banner(report)

    @st.fragment(run_every=REFRESH_S)
    def live() -> None:
        render(feed)

    @st.fragment(run_every=REFRESH_S)
    def health() -> None:
        health_section(url, poller)

    health_line()
    live()
    health()


main()
