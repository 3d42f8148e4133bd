"""cryptomon_missing_packages: which of a role's apt specs the host's package facts do not show
installed. Every role's apt task runs only when the answer is not empty, so an answer that is
too short would leave a package uninstalled: without facts, or for a spec the facts cannot
settle, the spec counts as missing (apt decides)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

spec = importlib.util.spec_from_file_location(
    "cryptomon_packages",
    Path(__file__).resolve().parents[2] / "roles" / "cryptomon" / "filter_plugins" / "cryptomon_packages.py")
cryptomon_packages = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cryptomon_packages)
missing = cryptomon_packages.cryptomon_missing_packages

# the shape package_facts (manager apt) gives
FACTS = {
    "openjdk-17-jre-headless": [{"name": "openjdk-17-jre-headless", "version": "17.0.13+11-2~deb12u1",
                                 "arch": "amd64", "category": "java", "origin": "Debian"}],
    "python3-venv": [{"name": "python3-venv", "version": "3.11.2-1+b1", "arch": "amd64"}],
    "libc6:i386": [{"name": "libc6:i386", "version": "2.36-9", "arch": "i386"}],
}


def test_installed_packages_are_not_missing() -> None:
    assert missing(["openjdk-17-jre-headless", "python3-venv"], FACTS) == []
    assert missing("python3-venv", FACTS) == []


def test_absent_packages_are_missing_in_the_given_order() -> None:
    assert missing(["nginx", "python3-venv", "python3-passlib"], FACTS) == ["nginx", "python3-passlib"]


@pytest.mark.parametrize("facts", [None, "", [], 0])
def test_without_facts_every_spec_is_missing(facts: object) -> None:
    assert missing(["python3-venv", "nginx"], facts) == ["python3-venv", "nginx"]


def test_a_pinned_version_must_be_the_installed_one() -> None:
    assert missing(["python3-venv=3.11.2-1+b1"], FACTS) == []
    assert missing(["python3-venv=3.11.4-1"], FACTS) == ["python3-venv=3.11.4-1"]
    assert missing(["openjdk-17-jre-headless=17.0.13*"], FACTS) == []
    assert missing(["openjdk-17-jre-headless=17.0.14*"], FACTS) == ["openjdk-17-jre-headless=17.0.14*"]


def test_specs_the_facts_cannot_settle_are_left_to_apt() -> None:
    # a version range needs Debian's version ordering, a name wildcard apt's cache
    assert missing(["python3-venv>=3.0", "python3-*"], FACTS) == ["python3-venv>=3.0", "python3-*"]


def test_an_architecture_must_match() -> None:
    assert missing(["python3-venv:amd64"], FACTS) == []
    assert missing(["python3-venv:arm64"], FACTS) == ["python3-venv:arm64"]


def test_malformed_facts_count_as_missing() -> None:
    assert missing(["python3-venv"], {"python3-venv": "3.11"}) == ["python3-venv"]
    assert missing(["python3-venv"], {"python3-venv": ["3.11"]}) == ["python3-venv"]


@pytest.mark.parametrize("specs", [None, 3, {"name": "nginx"}, ["nginx", 3]])
def test_bad_specs_are_named(specs: object) -> None:
    with pytest.raises(AnsibleFilterError, match="package name or a list"):
        missing(specs, FACTS)
