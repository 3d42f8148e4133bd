# Part of cryptomon (roles/kafka_admin): the connection options shared by the kafka_topic,
# kafka_acl and kafka_scram_user modules, and the admin client they build from them.

import time

CONNECTION_OPTIONS = {
    "bootstrap_servers": {"type": "list", "elements": "str", "required": True},
    "security_protocol": {
        "type": "str",
        "default": "PLAINTEXT",
        "choices": ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
    },
    "sasl_mechanism": {
        "type": "str",
        "default": "SCRAM-SHA-512",
        "choices": ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"],
    },
    "sasl_username": {"type": "str"},
    "sasl_password": {"type": "str", "no_log": True},
    "ssl_ca_location": {"type": "path"},
    "ssl_certificate_location": {"type": "path"},
    "ssl_key_location": {"type": "path", "no_log": False},
    "timeout": {"type": "int", "default": 30},
}

CONNECTION_REQUIRED_IF = [
    ("security_protocol", "SASL_SSL", ("sasl_username", "sasl_password")),
    ("security_protocol", "SASL_PLAINTEXT", ("sasl_username", "sasl_password")),
]

CONNECTION_REQUIRED_TOGETHER = [("ssl_certificate_location", "ssl_key_location")]


class ClientErrors:
    """Keeps the last error librdkafka reported (authentication, TLS, connection), so a failed
    or timed-out request can say why instead of only "timed out"."""

    def __init__(self):
        self.last = None

    def __call__(self, err):
        self.last = err

    def explain(self, params):
        err = self.last
        if err is None:
            return ""
        text = err.str() if hasattr(err, "str") else str(err)
        hint = ""
        low = text.lower()
        if "authentication" in low and "invalid credentials" in low:
            hint = (f" (user {params.get('sasl_username')!r}: the password does not match the "
                    "cluster's SCRAM credential)")
        elif "ssl handshake" in low or "certificate verify failed" in low:
            hint = " (TLS: check ssl_ca_location and the broker certificate's SANs)"
        elif ("disconnected while requesting apiversion" in low
              or "might be caused by incorrect security.protocol" in low):
            hint = (f" (security_protocol={params.get('security_protocol')} does not match the "
                    "listener at this address)")
        return f"; last client error: {text}{hint}"


def client_config(params, client_id, errors=None):
    """librdkafka settings for an admin client from the modules' connection options."""
    servers = [s.strip() for s in params["bootstrap_servers"] if s and s.strip()]
    conf = {
        "bootstrap.servers": ",".join(servers),
        "client.id": client_id,
        "security.protocol": params["security_protocol"],
        # librdkafka would print every failed attempt on stderr; the module reports them.
        "log_level": 2,
    }
    if errors is not None:
        conf["error_cb"] = errors
    if params["security_protocol"].startswith("SASL_"):
        conf["sasl.mechanism"] = params["sasl_mechanism"]
        conf["sasl.username"] = params["sasl_username"] or ""
        conf["sasl.password"] = params["sasl_password"] or ""
    if params.get("ssl_ca_location"):
        conf["ssl.ca.location"] = params["ssl_ca_location"]
    if params.get("ssl_certificate_location"):
        conf["ssl.certificate.location"] = params["ssl_certificate_location"]
        conf["ssl.key.location"] = params["ssl_key_location"]
    return conf


def wait_until(predicate, timeout, interval=0.3):
    """Poll predicate() until it returns truthy or timeout seconds pass; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
