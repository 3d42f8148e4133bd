"""Whether the private CA and this host's certificate are already as prepare.yml would leave them.

Why: issuing is nine tasks (state dirs, CA key, CA request, CA certificate, TLS dir and CA copy,
host key, host request, signing, installing) plus reading the validity, about 7 s on every re-run
although nothing changes for a year. This action checks the same things in one round trip: the
controller's CA files in-process, the host's files through the cryptomon_tls_current module (the
host key never leaves the host; its public key does). Anything it cannot confirm makes the
caller take the full path, which decides as before: this action never writes.

Arguments:
  own_ca: the CA is the bundle's own (checked: state dirs 0700, key 0600 on secp384r1, a
    self-signed CA certificate with ca_common_name, CA:TRUE pathlen 0, keyCertSign and cRLSign).
  state_dirs: the controller's state dirs (0700).
  ca_cert, ca_key: controller paths of the CA that signs host certificates.
  ca_common_name: the own CA's common name.
  tls_dir, cert, key, ca: host paths (dir 0755, certificate and CA copy 0644, key 0600, root's).
  common_name, sans: what the host certificate must say (SANs as DNS:/IP: strings, exactly).
  warn_days: the certificate should still be valid this many days from now.

Returns: ca_current, host_current, reasons (why not), and, when host_current: not_after
(YYYYMMDDHHMMSSZ as x509_certificate_info gives it), valid_at_warn, common_name.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import stat
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_bytes
from ansible.plugins.action import ActionBase
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REQUIRED = {"own_ca", "ca_cert", "ca_key", "tls_dir", "cert", "key", "ca", "common_name", "sans", "warn_days"}
OPTIONAL = {"state_dirs", "ca_common_name"}


def _public(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _mode(path: str) -> str:
    return f"{stat.S_IMODE(os.stat(path).st_mode):04o}"


def _ext(cert: x509.Certificate, cls: type) -> Any:
    try:
        return cert.extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return None


def _load_cert(path: str) -> x509.Certificate:
    with open(to_bytes(path), "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read())


def state_dir_reasons(args: dict[str, Any]) -> list[str]:
    """The controller's state dirs (the secrets live there whoever's the CA)."""
    for path in args.get("state_dirs") or []:
        if not os.path.isdir(path) or _mode(path) != "0700":
            return [f"state dir {path} missing or not 0700"]
    return []


def own_ca_reasons(args: dict[str, Any]) -> list[str]:
    """Why the own CA on the controller is not as ca.yml leaves it (empty: it is)."""
    key_path, cert_path = args["ca_key"], args["ca_cert"]
    if not os.path.isfile(key_path) or _mode(key_path) != "0600":
        return [f"CA key {key_path} missing or not 0600"]
    if not os.path.isfile(cert_path) or _mode(cert_path) != "0644":
        return [f"CA certificate {cert_path} missing or not 0644"]
    with open(to_bytes(key_path), "rb") as handle:
        key = serialization.load_pem_private_key(handle.read(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp384r1":
        return ["CA key is not on secp384r1"]
    ca = _load_cert(cert_path)
    if _public(ca.public_key()) != _public(key.public_key()):
        return ["CA certificate does not belong to the CA key"]
    names = {a.oid: a.value for a in ca.subject}
    subject = (names.get(NameOID.COMMON_NAME), names.get(NameOID.ORGANIZATION_NAME))
    if subject != (args.get("ca_common_name"), "cryptomon"):
        return ["CA certificate's subject differs"]
    if ca.issuer != ca.subject:
        return ["CA certificate is not self-signed"]
    constraints = _ext(ca, x509.BasicConstraints)
    if constraints is None or not constraints.critical \
            or (constraints.value.ca, constraints.value.path_length) != (True, 0):
        return ["CA certificate's basic constraints differ"]
    usage = _ext(ca, x509.KeyUsage)
    if usage is None or not usage.critical or not (usage.value.key_cert_sign and usage.value.crl_sign) \
            or usage.value.digital_signature:
        return ["CA certificate's key usage differs"]
    return []


def host_reasons(args: dict[str, Any], host: dict[str, Any], ca: x509.Certificate,
                 ca_sha1: str) -> tuple[list[str], x509.Certificate | None]:
    """Why this host's TLS files are not as certificate.yml leaves them (empty: they are)."""
    def root_file(info: dict[str, Any], mode: str, kind: str = "regular") -> bool:
        return bool(info.get(kind)) and info.get("mode") == mode and info.get("uid") == 0 and info.get("gid") == 0

    if not root_file(host["tls_dir"], "0755", "dir"):
        return ["TLS dir missing or not root's 0755"], None
    if not root_file(host["ca"], "0644") or host["ca"].get("sha1") != ca_sha1:
        return ["the host's CA copy differs"], None
    key = host["key"]
    if not root_file(key, "0600") or key.get("curve") != "secp256r1" or not key.get("pkcs8"):
        return [f"host key missing, unreadable ({key.get('unreadable', 'mode, owner, curve or format')})"], None
    if not root_file(host["cert"], "0644") or not host["cert"].get("pem"):
        return ["host certificate missing or not root's 0644"], None
    try:
        cert = x509.load_pem_x509_certificate(host["cert"]["pem"].encode("ascii"))
    except ValueError:
        return ["host certificate unreadable"], None
    if _public(cert.public_key()).decode("ascii") != key.get("public_pem"):
        return ["host certificate does not belong to the host key"], None
    if cert.issuer != ca.subject:
        return ["host certificate was issued by another CA"], None
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return ["host certificate is not signed by the CA"], None
    if [(a.oid, a.value) for a in cert.subject] != [(NameOID.COMMON_NAME, args["common_name"])]:
        return ["host certificate's subject differs"], None
    if _sans(cert) != {_normal_san(s) for s in args["sans"]}:
        return ["host certificate's SANs differ"], None
    usage = _ext(cert, x509.KeyUsage)
    if usage is None or not (usage.value.digital_signature and usage.value.key_agreement) or usage.value.key_cert_sign:
        return ["host certificate's key usage differs"], None
    eku = _ext(cert, x509.ExtendedKeyUsage)
    if eku is None or set(eku.value) != {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}:
        return ["host certificate's extended key usage differs"], None
    return [], cert


def _normal_san(value: str) -> str:
    kind, _, name = str(value).partition(":")
    if kind == "IP":
        return f"IP:{ipaddress.ip_address(name)}"
    return f"{kind}:{name}"


def _sans(cert: x509.Certificate) -> set[str]:
    ext = _ext(cert, x509.SubjectAlternativeName)
    if ext is None:
        return set()
    return {f"DNS:{n}" for n in ext.value.get_values_for_type(x509.DNSName)} | {
        f"IP:{n}" for n in ext.value.get_values_for_type(x509.IPAddress)}


class ActionModule(ActionBase):
    _requires_connection = True

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        missing = sorted(REQUIRED - set(args))
        unknown = sorted(set(args) - REQUIRED - OPTIONAL)
        if missing or unknown:
            raise AnsibleActionFail(f"cryptomon_tls_current: missing {missing}, unknown {unknown}")
        result.update(changed=False, ca_current=False, host_current=False, reasons=[])
        try:
            reasons = state_dir_reasons(args) or (own_ca_reasons(args) if args["own_ca"] else [])
        except (OSError, ValueError, TypeError) as err:
            reasons = [f"CA unreadable: {err}"]
        result["ca_current"] = not reasons
        if reasons or not os.path.isfile(args["ca_cert"]):
            result["reasons"] = reasons or [f"CA certificate {args['ca_cert']} missing"]
            return result
        try:
            ca = _load_cert(args["ca_cert"])
            with open(to_bytes(args["ca_cert"]), "rb") as handle:
                ca_sha1 = hashlib.sha1(handle.read()).hexdigest()  # noqa: S324 - copy's checksum
        except (OSError, ValueError) as err:
            result["reasons"] = [f"CA unreadable: {err}"]
            return result
        try:
            host = self._execute_module(
                module_name="cryptomon_tls_current", task_vars=task_vars,
                module_args={k: args[k] for k in ("tls_dir", "cert", "key", "ca")})
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        if host.get("failed"):
            result["reasons"] = [f"host files not readable: {host.get('msg')}"]
            return result
        reasons, cert = host_reasons(args, host, ca, ca_sha1)
        result["reasons"] = reasons
        if cert is None:
            return result
        not_after = cert.not_valid_after_utc
        warn_at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=int(args["warn_days"]))
        result.update(host_current=True, not_after=not_after.strftime("%Y%m%d%H%M%SZ"),
                      valid_at_warn=not_after > warn_at, common_name=args["common_name"])
        return result
