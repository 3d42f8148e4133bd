"""The shortcut of the shared role's TLS preparation (action cryptomon_tls_current): a re-run
with the CA and the host's key and certificate in place checks them in one round trip and skips
issuing; anything off takes the full path, which puts it right. Real ansible-playbook runs of
the role on this machine (tests/unit/test_pki_role.py covers what the full path issues)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_pki_role import cert, run  # noqa: E402

CHECK = "Check whether the CA and this host's certificate are current"
ISSUE = ("Generate the CA key", "Generate the host key", "Sign the host certificate with the CA")


def task(out: dict, name: str) -> dict:
    for play in out["plays"]:
        for t in play["tasks"]:
            if t["task"]["name"].removeprefix("cryptomon : ").startswith(name):
                return t["hosts"]["node-a"]
    raise AssertionError(f"no task {name!r}")


def issued(out: dict) -> list[str]:
    return [n for n in ISSUE if not task(out, n).get("skipped")]


def test_a_current_host_skips_issuing_and_keeps_its_certificate(tmp_path: Path) -> None:
    first = run(tmp_path)
    assert first["node"]["failures"] == 0, first["raw"][-3000:]
    assert task(first, CHECK)["host_current"] is False
    serial = cert(tmp_path / "tls" / "host.crt").serial_number

    again = run(tmp_path)
    check = task(again, CHECK)
    assert (check["ca_current"], check["host_current"], check["reasons"]) == (True, True, [])
    assert issued(again) == []
    assert again["node"]["changed"] == 0
    assert check["not_after"] == cert(tmp_path / "tls" / "host.crt").not_valid_after_utc.strftime("%Y%m%d%H%M%SZ")
    assert cert(tmp_path / "tls" / "host.crt").serial_number == serial


def test_anything_off_takes_the_full_path_which_mends_it(tmp_path: Path) -> None:
    assert run(tmp_path)["node"]["failures"] == 0
    key = tmp_path / "tls" / "host.key"
    key.chmod(0o644)
    loose = run(tmp_path)
    assert task(loose, CHECK)["host_current"] is False
    assert "host key" in task(loose, CHECK)["reasons"][0]
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert task(run(tmp_path), CHECK)["host_current"] is True

    # A CA copy on the host that is not the controller's CA is put back.
    ca_copy = tmp_path / "tls" / "ca.crt"
    original = ca_copy.read_bytes()
    ca_copy.write_bytes(original.replace(b"\n", b"\n\n", 1))
    off = run(tmp_path)
    assert task(off, CHECK)["reasons"] == ["the host's CA copy differs"]
    assert ca_copy.read_bytes() == original

    # Another SAN wanted: a new certificate from the same key.
    wider = run(tmp_path, {"cryptomon_tls_extra_sans": ["kafka.internal"]})
    assert task(wider, CHECK)["reasons"] == ["host certificate's SANs differ"]
    assert "Sign the host certificate with the CA" in issued(wider)


def test_a_state_dir_gone_is_made_again(tmp_path: Path) -> None:
    assert run(tmp_path)["node"]["failures"] == 0
    (tmp_path / "state" / "pki").chmod(0o755)
    out = run(tmp_path)
    assert task(out, CHECK)["ca_current"] is False
    assert oct((tmp_path / "state" / "pki").stat().st_mode & 0o777) == "0o700"
