"""The monitoring role's files, rendered for inventory/example (svc-1 is its monitoring host) without
touching a host: Prometheus' and Alertmanager's own checkers accept them, the scrape targets
follow the inventory and the producers' registry, and `promtool test rules` shows the alerts
firing when they should and not before."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptomon.producer.registry import describe
from unit.playbook_runner import PlaybookRun, run_playbook

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "monitoring"
PLAYBOOK = REPO / "tests" / "fixtures" / "ansible" / "render_monitoring.yml"
FIXTURES = REPO / "tests" / "fixtures" / "monitoring"
EXAMPLE = REPO / "inventory" / "example"
REGISTRY = describe(real_only=True)
EXCHANGES = [e["name"] for e in REGISTRY]
# Hosts of inventory/example.
KAFKA = ["kctl-1", "kctl-2", "kctl-3", "kbrk-1", "kbrk-2", "kbrk-3"]
ALL_HOSTS = [*KAFKA, "flink-jm-1", "flink-tm-1", "flink-tm-2", "svc-1"]


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: apt-get install prometheus prometheus-alertmanager (make system-deps)"
    return path


def playbook(out: Path, inventory: Path | None, extra: dict[str, object]) -> PlaybookRun:
    """Render the role's files for the monitoring hosts into out/<host>/; the TLS copies are
    pointed into `out` (empty files: promtool checks that they exist)."""
    tls = out / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    for name in ("host.crt", "host.key", "ca.crt"):
        (tls / name).touch()
    variables = {"render_out": str(out), "cryptomon_services_registry": REGISTRY,
                 "ansible_python_interpreter": sys.executable, "monitoring_tls_dir": str(tls), **extra}
    return run_playbook(PLAYBOOK, inventory=inventory or EXAMPLE, extra_vars=variables)


def render(out: Path, inventory: Path | None = None, **extra: object) -> Path:
    # The rule files where prometheus.yml names them, so `promtool check config` reads them.
    extra.setdefault("monitoring_rules_dir", str(out / "svc-1"))
    playbook(out, inventory, extra).assert_ok()
    return out


def render_error(out: Path, inventory: Path | None = None, **extra: object) -> str:
    """The play's output when rendering must fail."""
    res = playbook(out, inventory, extra)
    assert res.rc != 0, res.stdout[-3000:]
    return res.stdout + res.stderr


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """inventory/example with svc-1 as the monitoring host, every default."""
    return render(tmp_path_factory.mktemp("monitoring"))


def scrape_jobs(host_dir: Path) -> dict[str, list[dict]]:
    config = yaml.safe_load((host_dir / "prometheus.yml").read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def targets(job: dict) -> dict[str, dict[str, str]]:
    """instance label -> {address, other labels}."""
    out = {}
    for static in job["static_configs"]:
        (address,) = static["targets"]
        labels = dict(static["labels"])
        instance = labels.pop("instance")
        out[instance] = {"address": address, **labels}
    return out


def default_args(path: Path) -> list[str]:
    match = re.search(r'^ARGS="(.*)"$', path.read_text(), re.MULTILINE)
    assert match, path.read_text()
    return match.group(1).split()


# --- The checkers the role runs as `validate:` ------------------------------------------------


def test_prometheus_config_and_rules_pass_promtool(rendered: Path) -> None:
    res = run([tool("promtool"), "check", "config", str(rendered / "svc-1" / "prometheus.yml")])
    assert res.returncode == 0, res.stdout + res.stderr
    # the config names both rule files, so they were checked too
    assert "SUCCESS: 2 rule files found" in res.stdout + res.stderr


def test_alertmanager_config_passes_amtool(rendered: Path) -> None:
    res = run([tool("amtool"), "check-config", str(rendered / "svc-1" / "alertmanager.yml")])
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_checkers_do_fail_on_a_broken_file(tmp_path: Path, rendered: Path) -> None:
    # guards the two tests above: a broken expression and an unknown field are refused
    rules = yaml.safe_load((rendered / "svc-1" / "cryptomon-alerts.yml").read_text())
    rules["groups"][0]["rules"][0]["expr"] = "cryptomon_producer_last_trade_age_seconds >"
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    assert run([tool("promtool"), "check", "rules", str(tmp_path / "rules.yml")]).returncode != 0
    am = yaml.safe_load((rendered / "svc-1" / "alertmanager.yml").read_text())
    am["route"]["group_wiat"] = "30s"
    (tmp_path / "am.yml").write_text(yaml.safe_dump(am))
    assert run([tool("amtool"), "check-config", str(tmp_path / "am.yml")]).returncode != 0


# --- What the rules do --------------------------------------------------------------------------


def test_alerts_fire_when_documented_and_not_before(tmp_path: Path, rendered: Path) -> None:
    """tests/fixtures/monitoring/rules_test.yml: producer silent after 60 s without trades (not
    at 60 s), or 60 s down; target down after 2 min; a cancelled Flink job; offline partitions;
    a full disk after 5 min; the dashboard's trades/s."""
    for name in ("cryptomon-alerts.yml", "cryptomon-recording.yml"):
        shutil.copy(rendered / "svc-1" / name, tmp_path / name)
    shutil.copy(FIXTURES / "rules_test.yml", tmp_path / "rules_test.yml")
    res = run([tool("promtool"), "test", "rules", "rules_test.yml"], cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


def alert_rules(host_dir: Path) -> list[dict]:
    groups = yaml.safe_load((host_dir / "cryptomon-alerts.yml").read_text())["groups"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


def test_every_alert_has_a_severity_a_duration_and_words_for_people(rendered: Path) -> None:
    rules = alert_rules(rendered / "svc-1")
    assert len(rules) >= 15
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert "for" in rule, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
    names = {r["alert"] for r in rules}
    assert {"CryptomonProducerSilent", "CryptomonProducerGaps", "CryptomonProducerReconnectStorm",
            "CryptomonAlerterLag", "CryptomonDiscordDeliveryFailing", "FlinkJobNotRunning", "FlinkJobRestarting",
            "FlinkCheckpointsFailing", "KafkaUnderReplicatedPartitions", "KafkaOfflinePartitions", "HostDiskFull",
            "TargetDown"} <= names


def metric_names(expr: str, prefix: str) -> set[str]:
    """Metric names with a prefix in a PromQL expression (label values, quoted, left out)."""
    return set(re.findall(rf"\b({prefix}_[A-Za-z0-9_]+)", re.sub(r'"[^"]*"', "", expr)))


def test_rules_use_only_metrics_the_services_expose(rendered: Path) -> None:
    documented = set(re.findall(r"`(cryptomon_[a-z_]+)`", (REPO / "docs" / "metrics.md").read_text()))
    used = set()
    for name in ("cryptomon-alerts.yml", "cryptomon-recording.yml"):
        groups = yaml.safe_load((rendered / "svc-1" / name).read_text())["groups"]
        used |= {m for g in groups for r in g["rules"] for m in metric_names(r["expr"], "cryptomon")}
    assert used and used <= documented, sorted(used - documented)


# Beans as the JMX exporter formats them for rule matching: domain<key=value, ...><>attribute.
KAFKA_BEANS = [
    "kafka.server<type=ReplicaManager, name=UnderReplicatedPartitions><>Value",
    "kafka.server<type=ReplicaManager, name=UnderMinIsrPartitionCount><>Value",
    "kafka.server<type=ReplicaManager, name=PartitionCount><>Value",
    "kafka.server<type=ReplicaManager, name=LeaderCount><>Value",
    "kafka.controller<type=KafkaController, name=ActiveControllerCount><>Value",
    "kafka.controller<type=KafkaController, name=OfflinePartitionsCount><>Value",
    "kafka.controller<type=KafkaController, name=ActiveBrokerCount><>Value",
    "kafka.controller<type=KafkaController, name=FencedBrokerCount><>Value",
    "kafka.server<type=BrokerTopicMetrics, name=MessagesInPerSec, topic=trades.raw><>Count",
    "kafka.server<type=BrokerTopicMetrics, name=BytesInPerSec, topic=trades.raw><>Count",
    "kafka.server<type=BrokerTopicMetrics, name=BytesOutPerSec, topic=trades.raw><>Count",
    "kafka.network<type=RequestMetrics, name=TotalTimeMs, request=Produce><>99thPercentile",
]


def jmx_exporter_names(config: dict, beans: list[str]) -> dict[str, str]:
    """bean -> metric name, as the agent derives it: the first rule whose pattern matches the
    whole bean, $n replaced by its groups, lower-cased (lowercaseOutputName)."""
    out = {}
    for bean in beans:
        for rule in config["rules"]:
            match = re.fullmatch(rule["pattern"], bean)
            if match:
                name = re.sub(r"\$(\d)", lambda m, g=match: g.group(int(m.group(1))), rule["name"])
                out[bean] = name.lower() if config.get("lowercaseOutputName") else name
                break
    return out


def test_kafka_rules_use_the_names_the_jmx_exporter_config_defines(rendered: Path) -> None:
    config = yaml.safe_load((REPO / "roles" / "kafka" / "files" / "kafka-jmx-exporter.yml").read_text())
    names = jmx_exporter_names(config, KAFKA_BEANS)
    assert set(names) == set(KAFKA_BEANS), f"beans no rule matches: {set(KAFKA_BEANS) - set(names)}"
    assert names[KAFKA_BEANS[-1]] == "kafka_network_request_total_time_ms"
    for bean in KAFKA_BEANS:  # every bean a rule names is also read
        domain, rest = bean.split("<", 1)
        kind = re.search(r"type=(\w+)", rest).group(1)
        assert any(p.startswith(f"{domain}:type={kind},") for p in config["includeObjectNames"]), bean
    used = {m for r in alert_rules(rendered / "svc-1") for m in metric_names(r["expr"], "kafka")}
    assert used and used <= set(names.values()), sorted(used - set(names.values()))


# --- Targets from the inventory ---------------------------------------------------------------


def test_every_host_node_exporter_is_scraped_over_tls(rendered: Path) -> None:
    node = scrape_jobs(rendered / "svc-1")["node"]
    assert node["scheme"] == "https"
    assert set(node["tls_config"]) == {"ca_file", "cert_file", "key_file"}
    assert set(targets(node)) == {f"{h}:9100" for h in ALL_HOSTS}
    web = yaml.safe_load((rendered / "svc-1" / "node-exporter-web.yml").read_text())
    assert web["tls_server_config"]["client_auth_type"] == "RequireAndVerifyClientCert"


def test_flink_and_kafka_targets_follow_the_inventory(rendered: Path) -> None:
    jobs = scrape_jobs(rendered / "svc-1")
    assert targets(jobs["flink_jobmanager"]) == {"flink-jm-1:9249": {"address": "flink-jm-1:9249"}}
    assert set(targets(jobs["flink_taskmanager"])) == {"flink-tm-1:9250", "flink-tm-2:9250"}
    assert set(targets(jobs["kafka"])) == {f"{h}:7071" for h in KAFKA}
    assert targets(jobs["prometheus"]) == {"svc-1:9090": {"address": "127.0.0.1:9090"}}
    assert targets(jobs["alertmanager"]) == {"svc-1:9095": {"address": "127.0.0.1:9095"}}


def test_producer_ports_follow_the_registry_as_the_services_role_gives_them(rendered: Path) -> None:
    # cryptomon_services' default producers (binance, coinbase) on loopback of this very host
    jobs = scrape_jobs(rendered / "svc-1")
    expected = {f"svc-1:{9310 + EXCHANGES.index(p)}": {"address": f"127.0.0.1:{9310 + EXCHANGES.index(p)}",
                                                       "producer": p} for p in ("binance", "coinbase")}
    assert targets(jobs["cryptomon_producer"]) == expected
    assert targets(jobs["cryptomon_alerter"]) == {"svc-1:9330": {"address": "127.0.0.1:9330"}}


def test_the_dashboard_is_scraped_on_its_shared_port(rendered: Path) -> None:
    # its own /metrics (cryptomon_dashboard_up), where the services role's dashboard.env puts it
    jobs = scrape_jobs(rendered / "svc-1")
    assert targets(jobs["cryptomon_dashboard"]) == {"svc-1:9331": {"address": "127.0.0.1:9331"}}
    assert "scheme" not in jobs["cryptomon_dashboard"]  # plain HTTP, as the alerter's


def test_dashboard_switched_off_or_moved(tmp_path: Path) -> None:
    off = render(tmp_path / "off", cryptomon_services_dashboard_enabled=False)
    jobs = scrape_jobs(off / "svc-1")
    assert "cryptomon_dashboard" not in jobs and "cryptomon_alerter" in jobs
    moved = render(tmp_path / "moved", cryptomon_services_metrics_dashboard_port=9441,
                   monitoring_rules_dir=str(tmp_path / "moved" / "svc-1"))
    assert targets(scrape_jobs(moved / "svc-1")["cryptomon_dashboard"]) == {
        "svc-1:9441": {"address": "127.0.0.1:9441"}}
    res = run([tool("promtool"), "check", "config", str(moved / "svc-1" / "prometheus.yml")])
    assert res.returncode == 0, res.stdout + res.stderr


def test_metrics_off_scrapes_no_service(tmp_path: Path) -> None:
    jobs = scrape_jobs(render(tmp_path, cryptomon_services_metrics_enabled=False) / "svc-1")
    assert not {"cryptomon_producer", "cryptomon_alerter", "cryptomon_dashboard"} & set(jobs)


def test_every_producer_and_the_mock_get_their_own_port(tmp_path: Path) -> None:
    out = render(tmp_path, cryptomon_services_producers=["mock", *reversed(EXCHANGES)],
                 cryptomon_services_alerter_enabled=False)
    jobs = scrape_jobs(out / "svc-1")
    ports = {t["producer"]: int(t["address"].rsplit(":", 1)[1]) for t in targets(jobs["cryptomon_producer"]).values()}
    assert ports == {name: 9310 + i for i, name in enumerate([*EXCHANGES, "mock"])}
    assert "cryptomon_alerter" not in jobs


# --- Services on another host than Prometheus -------------------------------------------------


def separate_monitoring_host(tmp_path: Path) -> Path:
    """inventory/example with Prometheus on a host of its own, mon-1, instead of svc-1."""
    inventory = tmp_path / "inventory"
    shutil.copytree(EXAMPLE, inventory)
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    hosts["all"]["children"]["monitoring"] = {"hosts": {"mon-1": {"ansible_host": "10.0.4.11"}}}
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return inventory


def test_loopback_metrics_on_another_host_are_refused_with_the_fix(tmp_path: Path) -> None:
    output = render_error(tmp_path / "out", separate_monitoring_host(tmp_path))
    jobs = "cryptomon_producer, cryptomon_alerter, cryptomon_dashboard"
    assert f"The {jobs} metrics on svc-1 listen on 127.0.0.1" in output, output[-3000:]
    assert "set cryptomon_services_metrics_address to an address" in output
    # Kafka's agents listen on their private addresses by default: reachable, not named
    assert "cryptomon_kafka_jmx_exporter_address" not in output


def test_private_metrics_address_is_scraped_from_the_monitoring_host(tmp_path: Path) -> None:
    out = render(tmp_path / "out", separate_monitoring_host(tmp_path), cryptomon_services_metrics_address="10.0.3.11",
                 monitoring_rules_dir=str(tmp_path / "out" / "mon-1"))
    jobs = scrape_jobs(out / "mon-1")
    assert targets(jobs["cryptomon_producer"])["svc-1:9310"] == {"address": "10.0.3.11:9310", "producer": "binance"}
    assert targets(jobs["cryptomon_alerter"]) == {"svc-1:9330": {"address": "10.0.3.11:9330"}}
    assert targets(jobs["cryptomon_dashboard"]) == {"svc-1:9331": {"address": "10.0.3.11:9331"}}
    assert "mon-1:9100" in targets(jobs["node"])


# --- Command lines, Alertmanager, knobs ---------------------------------------------------------


def test_prometheus_and_alertmanager_listen_on_loopback_only(rendered: Path) -> None:
    prom = default_args(rendered / "svc-1" / "default-prometheus")
    assert "--web.listen-address=127.0.0.1:9090" in prom
    assert "--storage.tsdb.retention.time=15d" in prom
    assert "--web.external-url=https://svc-1/prometheus/" in prom and "--web.route-prefix=/" in prom
    am = default_args(rendered / "svc-1" / "default-prometheus-alertmanager")
    assert "--web.listen-address=127.0.0.1:9095" in am
    # its gossip listener would take 0.0.0.0:9094, Kafka's internal port
    assert "--cluster.listen-address=" in am
    node = default_args(rendered / "svc-1" / "default-prometheus-node-exporter")
    assert node == ["--web.listen-address=:9100", "--web.config.file=/etc/prometheus/node-exporter-web.yml"]


def test_without_a_webhook_alertmanager_sends_nothing(rendered: Path) -> None:
    am = yaml.safe_load((rendered / "svc-1" / "alertmanager.yml").read_text())
    assert am["receivers"] == [{"name": "discord"}]


def test_webhook_and_knobs_reach_the_files(tmp_path: Path) -> None:
    url = "https://discord.com/api/webhooks/123/secret-token"
    out = render(tmp_path, monitoring_discord_webhook_url=url, monitoring_alert_producer_silent_seconds=30,
                 monitoring_prometheus_retention_time="30d", monitoring_prometheus_retention_size="20GB")
    am = yaml.safe_load((out / "svc-1" / "alertmanager.yml").read_text())
    assert am["receivers"] == [{"name": "discord", "discord_configs": [{"webhook_url": url, "send_resolved": True}]}]
    assert am["route"]["group_wait"] == "10s" and am["route"]["repeat_interval"] == "4h"
    assert run([tool("amtool"), "check-config", str(out / "svc-1" / "alertmanager.yml")]).returncode == 0
    silent = [r for r in alert_rules(out / "svc-1") if r["alert"] == "CryptomonProducerSilent"]
    assert "> 30" in silent[0]["expr"] and silent[1]["for"] == "30s"
    prom = default_args(out / "svc-1" / "default-prometheus")
    assert "--storage.tsdb.retention.time=30d" in prom and "--storage.tsdb.retention.size=20GB" in prom
    assert run([tool("promtool"), "check", "config", str(out / "svc-1" / "prometheus.yml")]).returncode == 0


def test_a_bad_retention_is_refused_naming_the_variable(tmp_path: Path) -> None:
    output = render_error(tmp_path, monitoring_prometheus_retention_time="two weeks")
    assert "monitoring_prometheus_retention_time" in output and "two weeks" in output


# --- Kafka's and Flink's exporters: knobs shared with the roles that run them -------------------


def test_kafka_agents_on_loopback_of_other_hosts_are_refused_naming_the_variable(tmp_path: Path) -> None:
    output = render_error(tmp_path, cryptomon_kafka_jmx_exporter_address="127.0.0.1")
    expected = f"kafka metrics on {', '.join(KAFKA)} listen on 127.0.0.1"
    assert expected in output, output[-3000:]
    assert "set cryptomon_kafka_jmx_exporter_address to an address" in output


def test_kafka_agents_on_an_address_are_scraped_there(tmp_path: Path) -> None:
    # one broker's agent on an address of its own (host_vars), the rest on their private addresses
    inventory = separate_monitoring_host(tmp_path)
    (inventory / "host_vars").mkdir()
    (inventory / "host_vars" / "kbrk-1.yml").write_text("cryptomon_kafka_jmx_exporter_address: 10.0.1.21\n")
    out = render(tmp_path / "out", inventory, cryptomon_services_metrics_address="10.0.3.11",
                 monitoring_rules_dir=str(tmp_path / "out" / "mon-1"))
    kafka = targets(scrape_jobs(out / "mon-1")["kafka"])
    assert kafka["kbrk-1:7071"] == {"address": "10.0.1.21:7071"}
    assert kafka["kbrk-2:7071"] == {"address": "kbrk-2:7071"}


def test_switched_off_exporters_are_not_scraped(tmp_path: Path) -> None:
    out = render(tmp_path, cryptomon_kafka_jmx_exporter_enabled=False, cryptomon_flink_prometheus_enabled=False)
    jobs = scrape_jobs(out / "svc-1")
    assert not {"kafka", "flink_jobmanager", "flink_taskmanager"} & set(jobs)
    assert {"node", "cryptomon_producer", "prometheus", "alertmanager"} <= set(jobs)
    res = run([tool("promtool"), "check", "config", str(out / "svc-1" / "prometheus.yml")])
    assert res.returncode == 0, res.stdout + res.stderr


def test_alertmanager_on_kafkas_controller_port_is_refused(tmp_path: Path) -> None:
    # Alertmanager's usual 9093 is the controller listener: one host running both loses one
    output = render_error(tmp_path, cryptomon_alertmanager_port=9093)
    assert "cryptomon_alertmanager_port (9093) is also cryptomon_kafka_controller_port" in output, output[-3000:]


@pytest.mark.parametrize("service", ["alerter", "dashboard"])
def test_prometheus_on_a_services_metrics_port_is_refused(tmp_path: Path, service: str) -> None:
    port = {"alerter": 9330, "dashboard": 9331}[service]
    output = render_error(tmp_path, cryptomon_prometheus_port=port)
    assert f"cryptomon_prometheus_port ({port}) is also cryptomon_services_metrics_{service}_port" in output, \
        output[-3000:]


def test_drop_ins_carry_limits_the_failure_hook_and_overrides(tmp_path: Path, rendered: Path) -> None:
    dropin = (rendered / "svc-1" / "dropin-prometheus.conf").read_text()
    assert "MemoryMax=2G" in dropin and "TasksMax=512" in dropin and "OnFailure=cryptomon-unit-failed@" in dropin
    assert "PrivateUsers" not in dropin
    out = render(tmp_path, monitoring_systemd_overrides={"prometheus": {"PrivateUsers": False, "Nice": 5}})
    dropin = (out / "svc-1" / "dropin-prometheus.conf").read_text()
    assert dropin.splitlines()[-2:] == ["Nice=5", "PrivateUsers=no"]
    assert "PrivateUsers" not in (out / "svc-1" / "dropin-node_exporter.conf").read_text()


def test_the_sandbox_sends_to_the_discord_stand_in_and_scrapes_every_producer(tmp_path: Path) -> None:
    """inventory/sandbox as `make up` converges it: cm-services runs Prometheus, the webhook is the
    stand-in's (its port a shared value, visible to the monitoring play), every producer scraped."""
    out = render(tmp_path, REPO / "inventory" / "sandbox", ansible_connection="local",
                 monitoring_rules_dir=str(tmp_path / "cm-services"))
    am = yaml.safe_load((out / "cm-services" / "alertmanager.yml").read_text())
    (discord,) = am["receivers"][0]["discord_configs"]
    assert discord["webhook_url"] == "http://127.0.0.1:8090/api/webhooks/2/sandbox-token"
    assert run([tool("amtool"), "check-config", str(out / "cm-services" / "alertmanager.yml")]).returncode == 0
    res = run([tool("promtool"), "check", "config", str(out / "cm-services" / "prometheus.yml")])
    assert res.returncode == 0, res.stdout + res.stderr
    jobs = scrape_jobs(out / "cm-services")
    assert {t["producer"] for t in targets(jobs["cryptomon_producer"]).values()} == {*EXCHANGES, "mock"}
    assert targets(jobs["cryptomon_dashboard"]) == {"cm-services:9331": {"address": "127.0.0.1:9331"}}
    assert set(targets(jobs["node"])) == {"cm-kafka:9100", "cm-flink:9100", "cm-services:9100"}
    assert targets(jobs["flink_taskmanager"]) == {"cm-flink:9250": {"address": "cm-flink:9250"}}
