"""The shared role's TLS material, run by Ansible on this machine (no services): the private CA,
host keys and certificates, idempotence, renewal, the expiry warning, and the operator's own
CA or certificates with their failure messages."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from pki import TestCA  # noqa: E402

PLAY = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: The shared role
      ansible.builtin.include_role:
        name: cryptomon
"""


def run(tmp_path: Path, extra: dict | None = None, hostvars: str = "") -> dict:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "[nodes]\n"
        f"node-a ansible_connection=local ansible_python_interpreter={sys.executable} "
        f"ansible_host=10.1.2.3 cryptomon_advertised_host=node-a.example {hostvars}\n")
    variables = {
        "cryptomon_state_dir": str(tmp_path / "state"),
        "cryptomon_tls_dir": str(tmp_path / "tls"),
        "cryptomon_tls_install_packages": False,
        **(extra or {}),
    }
    res = run_playbook(PLAY, workdir=tmp_path, inventory=inventory, extra_vars=variables, json_output=True)
    out = dict(res.json)
    out["raw"] = res.stdout
    out["node"] = out["stats"]["node-a"]
    return out


def messages(out: dict) -> list[str]:
    return [str(h.get("msg", "")) for p in out["plays"] for t in p["tasks"] for h in t["hosts"].values()]


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(c: x509.Certificate) -> set[str]:
    ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {f"DNS:{n}" for n in ext.get_values_for_type(x509.DNSName)} | {
        f"IP:{n}" for n in ext.get_values_for_type(x509.IPAddress)}


def test_private_ca_issues_host_certificates_idempotently_and_renews(tmp_path):
    first = run(tmp_path)
    assert first["node"]["failures"] == 0, first["raw"][-3000:]
    ca_key = tmp_path / "state" / "pki" / "ca.key"
    assert oct(ca_key.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "state" / "pki").stat().st_mode & 0o777) == "0o700"
    host_key = tmp_path / "tls" / "host.key"
    assert oct(host_key.stat().st_mode & 0o777) == "0o600"
    issued = cert(tmp_path / "tls" / "host.crt")
    ca = cert(tmp_path / "tls" / "ca.crt")
    assert issued.issuer == ca.subject
    issued.verify_directly_issued_by(ca)
    assert issued.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "node-a"
    assert sans(issued) == {"DNS:node-a", "DNS:node-a.example", "IP:10.1.2.3"}
    assert isinstance(issued.public_key(), ec.EllipticCurvePublicKey)
    ext_usage = issued.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {u._name for u in ext_usage} == {"serverAuth", "clientAuth"}

    again = run(tmp_path)
    assert again["node"]["changed"] == 0, again["raw"][-3000:]
    assert cert(tmp_path / "tls" / "host.crt").serial_number == issued.serial_number

    # A new SAN is a new certificate (same key); renewal is a new key and certificate.
    wider = run(tmp_path, {"cryptomon_tls_extra_sans": ["kafka.internal"]})
    assert "DNS:kafka.internal" in sans(cert(tmp_path / "tls" / "host.crt"))
    assert wider["node"]["failures"] == 0
    key_before = host_key.read_bytes()
    renewed = run(tmp_path, {"cryptomon_tls_renew": True})
    assert renewed["node"]["failures"] == 0
    assert host_key.read_bytes() != key_before
    assert cert(tmp_path / "tls" / "host.crt").serial_number != issued.serial_number
    assert cert(tmp_path / "tls" / "ca.crt").serial_number == ca.serial_number  # same CA


def test_expiry_within_the_warning_window_warns(tmp_path):
    out = run(tmp_path, {"cryptomon_tls_warn_days": 400})  # certificates live 397 days
    assert any(m.startswith("WARNING: node-a's certificate") and "cryptomon_tls_renew=true" in m
               for m in messages(out)), messages(out)
    assert not any(m.startswith("WARNING: node-a's certificate") for m in messages(run(tmp_path)))


def test_operator_ca_signs_host_certificates(tmp_path):
    own = TestCA(tmp_path / "own-ca", name="Operator CA")
    key_path = tmp_path / "own-ca" / "ca.key"
    from cryptography.hazmat.primitives import serialization
    key_path.write_bytes(own._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    out = run(tmp_path, {"cryptomon_tls_ca_cert": str(own.cert_path), "cryptomon_tls_ca_key": str(key_path)})
    assert out["node"]["failures"] == 0, out["raw"][-3000:]
    cert(tmp_path / "tls" / "host.crt").verify_directly_issued_by(cert(own.cert_path))
    assert not (tmp_path / "state" / "pki" / "ca.key").exists()  # no private CA of our own


def test_operator_certificates_are_checked_then_installed_as_they_are(tmp_path):
    own = TestCA(tmp_path / "own-ca", name="Operator CA")
    good = own.issue("node-a", ["node-a", "node-a.example", "10.1.2.3"])
    byo = {"cryptomon_tls_ca_cert": str(own.cert_path), "cryptomon_tls_host_cert": str(good.cert),
           "cryptomon_tls_host_key": str(good.key)}
    out = run(tmp_path, byo)
    assert out["node"]["failures"] == 0, out["raw"][-3000:]
    assert (tmp_path / "tls" / "host.crt").read_bytes() == good.cert.read_bytes()
    assert oct((tmp_path / "tls" / "host.key").stat().st_mode & 0o777) == "0o600"

    narrow = own.issue("narrow", ["node-a"])
    bad = run(tmp_path, {**byo, "cryptomon_tls_host_cert": str(narrow.cert), "cryptomon_tls_host_key": str(narrow.key)})
    assert bad["node"]["failures"] == 1
    msg = next(m for m in messages(bad) if "do not cover" in m)
    assert "node-a:" in msg and "DNS:node-a.example" in msg and "IP:10.1.2.3" in msg

    other = TestCA(tmp_path / "other-ca", name="Someone else").issue("node-a", ["node-a", "node-a.example", "10.1.2.3"])
    stranger = run(tmp_path, {**byo, "cryptomon_tls_host_cert": str(other.cert),
                              "cryptomon_tls_host_key": str(other.key)})
    assert any("is not signed by" in m for m in messages(stranger)), messages(stranger)

    mismatched = run(tmp_path, {**byo, "cryptomon_tls_host_key": str(narrow.key)})
    assert any("does not belong to cryptomon_tls_host_cert" in m for m in messages(mismatched))


@pytest.mark.parametrize("missing", ["cryptomon_tls_ca_cert", "cryptomon_tls_host_cert"])
def test_missing_operator_files_name_the_variable(tmp_path, missing):
    own = TestCA(tmp_path / "own-ca")
    good = own.issue("node-a", ["node-a", "node-a.example", "10.1.2.3"])
    byo = {"cryptomon_tls_ca_cert": str(own.cert_path), "cryptomon_tls_host_cert": str(good.cert),
           "cryptomon_tls_host_key": str(good.key), missing: str(tmp_path / "nope.crt")}
    out = run(tmp_path, byo)
    assert out["node"]["failures"] == 1
    assert any(f"{missing}={tmp_path / 'nope.crt'}" in m for m in messages(out)), messages(out)
