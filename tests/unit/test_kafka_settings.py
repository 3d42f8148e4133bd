"""KafkaSettings: the TLS CA file and the password file (KAFKA_SSL_CA_LOCATION, KAFKA_PASSWORD_FILE)."""

from __future__ import annotations

import pytest
from cryptomon.kafka_settings import ConfigError, KafkaSettings

SECURE = {"KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
          "KAFKA_USERNAME": "cryptomon-producer"}


def test_ca_file_and_password_file_reach_the_client_config(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    secret = tmp_path / "kafka-password"
    secret.write_text("s3cret-from-a-file\n")
    s = KafkaSettings.from_env({**SECURE, "KAFKA_PASSWORD_FILE": str(secret), "KAFKA_SSL_CA_LOCATION": str(ca)})
    conf = s.client_config()
    assert conf["ssl.ca.location"] == str(ca)
    assert conf["sasl.password"] == "s3cret-from-a-file"  # the trailing newline is not part of it
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert s.password_file == str(secret)
    # never in a repr or the start-up line
    assert "s3cret" not in repr(s) and "s3cret" not in s.redacted()
    assert f"ca={ca}" in s.redacted()


@pytest.mark.parametrize(("env", "message"), [
    ({"KAFKA_PASSWORD_FILE": "/nonexistent/kafka-password"},
     r"KAFKA_PASSWORD_FILE: cannot read '/nonexistent/kafka-password'"),
    ({"KAFKA_PASSWORD_FILE": "{secret}", "KAFKA_PASSWORD": "x"}, "not both"),
    ({"KAFKA_PASSWORD": "x", "KAFKA_SSL_CA_LOCATION": "/nonexistent/ca.crt"},
     "KAFKA_SSL_CA_LOCATION: '/nonexistent/ca.crt' is not a readable file"),
    ({"KAFKA_PASSWORD_FILE": "{empty}"}, "is empty"),
    ({"KAFKA_PASSWORD_FILE": "{binary}"}, "is not UTF-8 text"),
])
def test_bad_secret_and_ca_settings_name_the_variable(tmp_path, env, message):
    (tmp_path / "secret").write_text("pw")
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    env = {k: v.format(secret=tmp_path / "secret", empty=tmp_path / "empty", binary=tmp_path / "binary")
           for k, v in env.items()}
    with pytest.raises(ConfigError, match=message):
        KafkaSettings.from_env({**SECURE, **env})


def test_ca_file_only_with_tls(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    with pytest.raises(ConfigError, match="KAFKA_SSL_CA_LOCATION is set but KAFKA_SECURITY_PROTOCOL=PLAINTEXT"):
        KafkaSettings.from_env({"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", "KAFKA_SSL_CA_LOCATION": str(ca)})
