#!/usr/bin/python
"""Host half of the cryptomon_tls_current action: what this host's TLS files are.

DOCUMENTATION is in the action's docstring (roles/cryptomon/action_plugins). The key never leaves
the host: only its curve, PEM format and public key are reported.
"""

from __future__ import annotations

import hashlib
import os
import stat

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: cryptomon_tls_current
short_description: Report this host's TLS dir, CA copy, key and certificate (for the cryptomon_tls_current action)
options:
  tls_dir: {type: path, required: true}
  cert: {type: path, required: true}
  key: {type: path, required: true}
  ca: {type: path, required: true}
"""


def _file(path: str) -> dict:
    try:
        st = os.lstat(path)
    except OSError:
        return {"exists": False}
    return {"exists": True, "dir": stat.S_ISDIR(st.st_mode), "regular": stat.S_ISREG(st.st_mode),
            "mode": f"{stat.S_IMODE(st.st_mode):04o}", "uid": st.st_uid, "gid": st.st_gid}


def _key(path: str, info: dict) -> dict:
    if not info.get("regular"):
        return info
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
    except ImportError:
        return {**info, "unreadable": "python3-cryptography is not installed"}
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        return {**info, "unreadable": str(err)}
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return {**info,
            "curve": key.curve.name if isinstance(key, ec.EllipticCurvePrivateKey) else None,
            "pkcs8": data.lstrip().startswith(b"-----BEGIN PRIVATE KEY-----"),
            "public_pem": public.decode("ascii")}


def main() -> None:
    module = AnsibleModule(
        argument_spec={k: {"type": "path", "required": True} for k in ("tls_dir", "cert", "key", "ca")},
        supports_check_mode=True)
    p = module.params
    cert = _file(p["cert"])
    if cert.get("regular"):
        with open(p["cert"], "rb") as handle:
            cert["pem"] = handle.read().decode("ascii", errors="replace")
    ca = _file(p["ca"])
    if ca.get("regular"):
        with open(p["ca"], "rb") as handle:
            ca["sha1"] = hashlib.sha1(handle.read()).hexdigest()  # noqa: S324 - copy's checksum
    module.exit_json(changed=False, tls_dir=_file(p["tls_dir"]), cert=cert, ca=ca,
                     key=_key(p["key"], _file(p["key"])))


if __name__ == "__main__":
    main()
