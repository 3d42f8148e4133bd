"""Every systemd unit of the bundle, rendered for inventory/example and scored by
`systemd-analyze security --offline=yes` (systemd's own exposure model, lower is safer)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests" / "fixtures" / "ansible" / "render_units.yml"

# Issue 10's ceilings: Python services, JVMs (no MemoryDenyWriteExecute under a JIT), keeper.
PYTHON_MAX, JVM_MAX, KEEPER_MAX = 2.5, 4.5, 3.0
CEILINGS = {
    "kafka.service": JVM_MAX,
    "flink-jobmanager.service": JVM_MAX,
    "flink-taskmanager.service": JVM_MAX,
    "cryptomon-flink-jobs.service": KEEPER_MAX,
    "cryptomon-producer@.service": PYTHON_MAX,
    "cryptomon-alerter.service": PYTHON_MAX,
    "cryptomon-dashboard.service": PYTHON_MAX,
    "cryptomon-replay@.service": PYTHON_MAX,
    "cryptomon-discord-stub.service": PYTHON_MAX,
}
ONE_HOST_EACH = {"kbrk-1": ["kafka.service"], "kctl-1": ["kafka.service"],
                 "flink-jm-1": ["flink-jobmanager.service", "cryptomon-flink-jobs.service"],
                 "flink-tm-1": ["flink-taskmanager.service"],
                 "svc-1": [u for u in CEILINGS if u.startswith("cryptomon-") and "flink" not in u]}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("units")
    run_playbook(PLAYBOOK, inventory=REPO / "inventory" / "example", extra_vars={"render_out": str(out)}).assert_ok()
    return out


def exposure(unit: Path) -> float:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: apt-get install systemd (make system-deps)"
    # A template unit (name@.service) is scored as an instance of itself.
    res = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", str(unit)],
                         capture_output=True, text=True, check=False)
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", res.stdout + res.stderr)
    assert match, res.stdout[-2000:] + res.stderr[-2000:]
    return float(match.group(1))


def test_every_unit_is_below_its_exposure_ceiling(rendered):
    scores = {}
    for host, units in ONE_HOST_EACH.items():
        for name in units:
            scores[f"{host}/{name}"] = (exposure(rendered / host / name), CEILINGS[name])
    print("\n".join(f"{k}: {s} (ceiling {c})" for k, (s, c) in sorted(scores.items())))
    over = {k: v for k, v in scores.items() if v[0] > v[1]}
    assert not over, f"units above their exposure ceiling (score, ceiling): {over}"


def unit_settings(path: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


@pytest.mark.parametrize("name", sorted(CEILINGS))
def test_every_unit_has_limits_a_failure_hook_and_no_root(rendered, name):
    path = next(rendered.glob(f"*/{name}"))
    s = unit_settings(path)
    assert s.get("MemoryMax") and s["MemoryMax"][0] not in ("", "infinity"), name
    assert s.get("TasksMax") and s["TasksMax"][0] not in ("", "infinity"), name
    assert s.get("OnFailure") == ["cryptomon-unit-failed@%n.service"], name
    assert s.get("DynamicUser") == ["yes"] or (s.get("User") and s["User"][0] not in ("root", "0")), name
    assert s.get("CapabilityBoundingSet") == [""] and s.get("ProtectProc") == ["invisible"], name


def test_each_service_has_its_own_user_and_no_secret_in_its_environment(rendered):
    users = {name: unit_settings(rendered / "svc-1" / name)["User"][0]
             for name in ("cryptomon-producer@.service", "cryptomon-alerter.service", "cryptomon-dashboard.service")}
    assert len(set(users.values())) == 3, users
    for name in users:
        s = unit_settings(rendered / "svc-1" / name)
        assert s["LoadCredential"][0].startswith("kafka-password:/etc/cryptomon/credentials/"), name
        assert s["Environment"][0] == "KAFKA_PASSWORD_FILE=%d/kafka-password", name
    assert not any("PASSWORD=" in line or "WEBHOOK_URL" in line
                   for f in (REPO / "templates" / "services").glob("*.j2") for line in f.read_text().splitlines()
                   if not line.startswith(("#", "{#")))


def test_the_jvm_units_stay_without_a_jit_breaking_setting(rendered):
    for name in ("kafka.service", "flink-taskmanager.service", "cryptomon-flink-jobs.service"):
        s = unit_settings(next(rendered.glob(f"*/{name}")))
        assert "MemoryDenyWriteExecute" not in s, name
        assert s["ReadWritePaths"], name


def test_replay_unit_scripts_opportunities_the_replay_cli_accepts(rendered):
    """The sandbox's replay servers dip now and then (for the quote arbitrage job), with the
    role's defaults, which the replay's own checks accept."""
    from cryptomon.replay.cli import opportunity_of

    start = unit_settings(next(rendered.glob("*/cryptomon-replay@.service")))["ExecStart"][0].split()
    every, for_s, bps = (start[start.index(f"--opportunity-{k}") + 1] for k in ("every", "for", "bps"))
    assert (every, for_s, bps) == ("120", "5", "200")
    opp = opportunity_of("coinbase", float(every), float(for_s), int(bps))
    assert opp is not None and opp.bps == 200
