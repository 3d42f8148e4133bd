"""The filters that let a role skip its group and user tasks when the host's account databases
(getent facts read once per host in the cryptomon role's prepare.yml) show them as wanted."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

PATH = Path(__file__).resolve().parents[2] / "roles" / "cryptomon" / "filter_plugins" / "cryptomon_accounts.py"
spec = importlib.util.spec_from_file_location("cryptomon_accounts", PATH)
accounts = importlib.util.module_from_spec(spec)
assert spec.loader is not None
spec.loader.exec_module(accounts)

PASSWD = {
    "kafka": ["x", "998", "997", "", "/opt/kafka", "/usr/sbin/nologin"],
    "prometheus": ["x", "997", "996", "Prometheus daemon", "/var/lib/prometheus", "/usr/sbin/nologin"],
}
GROUPS = {"kafka": ["x", "997", ""], "prometheus": ["x", "996", ""], "cryptomon": ["x", "995", ""]}
KAFKA = {"name": "kafka", "group": "kafka", "home": "/opt/kafka", "shell": "/usr/sbin/nologin"}


def test_groups_missing_from_the_database() -> None:
    assert accounts.cryptomon_missing_groups(["kafka", "flink"], GROUPS) == ["flink"]
    assert accounts.cryptomon_missing_groups("kafka", GROUPS) == []


def test_without_facts_every_account_is_returned() -> None:
    assert accounts.cryptomon_missing_groups(["kafka"], None) == ["kafka"]
    assert accounts.cryptomon_users_to_change([KAFKA], None, GROUPS) == [KAFKA]
    assert accounts.cryptomon_users_to_change([KAFKA], PASSWD, None) == [KAFKA]


def test_a_user_as_wanted_is_skipped() -> None:
    prometheus = {"name": "prometheus", "group": "prometheus", "home": "/var/lib/prometheus",
                  "shell": "/usr/sbin/nologin", "comment": "Prometheus daemon"}
    assert accounts.cryptomon_users_to_change([KAFKA, prometheus], PASSWD, GROUPS) == []


@pytest.mark.parametrize("change", [
    {"name": "flink"},  # missing
    {"group": "cryptomon"},  # another primary group
    {"group": "nosuchgroup"},  # group not there yet
    {"home": "/var/lib/kafka"},
    {"shell": "/bin/sh"},
    {"comment": "Kafka broker"},
])
def test_a_user_that_differs_is_returned(change: dict) -> None:
    wanted = {**KAFKA, **change}
    assert accounts.cryptomon_users_to_change(wanted, PASSWD, GROUPS) == [wanted]


@pytest.mark.parametrize(("call", "message"), [
    (lambda: accounts.cryptomon_missing_groups([""], GROUPS), "group name"),
    (lambda: accounts.cryptomon_users_to_change([{"group": "kafka"}], PASSWD, GROUPS), "user spec"),
    (lambda: accounts.cryptomon_users_to_change([{**KAFKA, "uid": 5}], PASSWD, GROUPS), "unknown key(s) ['uid']"),
])
def test_bad_input_is_named(call, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        call()
