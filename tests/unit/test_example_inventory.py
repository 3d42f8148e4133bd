"""inventory/example as an operator uses it: no shared cluster id, secrets from an ansible-vault
file (the worked example of docs/security.md), generated passwords for what the vault lacks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from unit.playbook_runner import run_playbook

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

PLAY = """\
- hosts: kbrk-1
  gather_facts: false
  connection: local
  tasks:
    - name: Load the shared values
      ansible.builtin.include_role:
        name: cryptomon
        tasks_from: shared.yml
        public: true
    - name: Report what the roles would use, hashed (the test never prints a password)
      ansible.builtin.debug:
        msg: >-
          {{ dict(cryptomon_kafka_credentials.keys()
                  | zip(cryptomon_kafka_credentials.values() | map(attribute='password') | map('hash', 'sha256'))) }}
"""


def test_example_does_not_hard_code_a_cluster_id():
    """Everyone copying the example would otherwise share one Kafka cluster id."""
    for f in (REPO / "inventory" / "example").rglob("*.yml"):
        data = yaml.safe_load(f.read_text()) or {}
        if isinstance(data, dict):
            assert "kafka_cluster_id" not in data, f
    assert "kafka_cluster_id" not in (REPO / "inventory" / "example" / "hosts.yml").read_text()


def test_vault_workflow_passwords_from_the_vault_and_generated_for_the_rest(tmp_path):
    inv = tmp_path / "prod"
    shutil.copytree(REPO / "inventory" / "example", inv)
    vault = inv / "group_vars" / "all" / "vault.yml"
    example = yaml.safe_load((inv / "group_vars" / "all" / "vault.yml.example").read_text())
    example["vault_kafka_passwords"].pop("alerter")  # not vaulted: generated
    vault.write_text(yaml.safe_dump(example))
    pw_file = tmp_path / "vault-pass"
    pw_file.write_text("correct horse battery staple\n")
    subprocess.run([str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(pw_file), str(vault)],
                   check=True, capture_output=True)
    assert vault.read_text().startswith("$ANSIBLE_VAULT;")
    res = run_playbook(PLAY, workdir=tmp_path, inventory=inv, json_output=True,
                       extra_vars={"cryptomon_state_dir": str(tmp_path / "state"),
                                   "ansible_python_interpreter": sys.executable},
                       args=["--vault-password-file", str(pw_file)]).assert_ok()
    hashes = res.json["plays"][0]["tasks"][-1]["hosts"]["kbrk-1"]["msg"]
    import hashlib

    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    assert hashes["producer"] == sha(example["vault_kafka_passwords"]["producer"])
    assert hashes["admin"] == sha(example["vault_kafka_passwords"]["admin"])
    generated = (tmp_path / "state" / "secrets" / "kafka-alerter.password").read_text().strip()
    assert hashes["alerter"] == sha(generated) and len(generated) == 32
    for secret in example["vault_kafka_passwords"].values():
        assert secret not in res.stdout
