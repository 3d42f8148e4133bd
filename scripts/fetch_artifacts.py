#!/usr/bin/env python3
"""Fill the controller's artifact cache for air-gapped installs.

One command (`make cache`) puts every artifact the roles need into
$CRYPTOMON_CACHE/artifacts (default ~/.cache/cryptomon/artifacts), verified against
the checksums kept in the repo:

  kafka/kafka_<scala>-<version>.tgz   the official Apache tarball, or, where the Apache
                                      archive is unreachable, the same release rebuilt
                                      from its Maven Central jars (same libs/ layout,
                                      byte-for-byte reproducible, checksum pinned)
  kafka/jmx_prometheus_javaagent-<v>.jar  the Prometheus JMX exporter agent from Maven Central
  flink/<connector>.jar               Flink Kafka SQL connector from Maven Central
  wheels/flink/                       apache-flink and its dependencies (hash-locked)
  wheels/services/                    the cryptomon services package and its deps

Versions and checksums are read from the roles' defaults so there is one source of truth.
Existing, verified files are kept: a second run downloads nothing.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = Path(os.environ.get("CRYPTOMON_CACHE", Path.home() / ".cache" / "cryptomon"))


class ArtifactError(RuntimeError):
    """An artifact could not be fetched or failed verification."""


def log(msg: str) -> None:
    print(f"[artifacts] {msg}", flush=True)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise ArtifactError(f"checksum mismatch for {path}: expected sha256 {expected}, got {actual}")


def role_defaults(role: str) -> dict:
    with (REPO / "roles" / role / "defaults" / "main.yml").open() as f:
        return yaml.safe_load(f)


def render(value: str, context: dict) -> str:
    """Resolve the simple `{{ var }}` references used in role defaults (no filters)."""
    import jinja2

    for _ in range(5):  # defaults may reference other defaults
        if "{{" not in value:
            break
        value = jinja2.Template(value, undefined=jinja2.StrictUndefined).render(**context)
    return value


def mvn(*args: str, cwd: Path) -> None:
    cmd = ["mvn", "-q", "-B", *args]
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise ArtifactError(f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}{res.stderr[-3000:]}")


# --- Kafka -------------------------------------------------------------------------------

def try_download(url: str, dest: Path, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, dest.open("wb") as out:
            shutil.copyfileobj(resp, out)
        return True
    except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
        log(f"{url} not reachable ({exc}); falling back")
        dest.unlink(missing_ok=True)
        return False


def read_jar_lock(path: Path) -> list[tuple[str, str, str, str]]:
    jars = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        coord, digest = line.split()
        group, artifact, version = coord.split(":")
        jars.append((group, artifact, version, digest))
    return jars


def deterministic_tgz(src_dir: Path, top: str, dest: Path) -> None:
    """Tar+gzip with fixed order, owners and times so the result's checksum can be pinned."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        paths = sorted(p for p in src_dir.rglob("*"))
        for d in [src_dir, *paths]:
            rel = d.relative_to(src_dir)
            name = top if str(rel) == "." else f"{top}/{rel.as_posix()}"
            info = tar.gettarinfo(str(d), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            info.mode = 0o755 if d.is_dir() else 0o644
            if d.is_dir():
                tar.addfile(info)
            else:
                with d.open("rb") as f:
                    tar.addfile(info, f)
    with dest.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(buf.getvalue())


def build_kafka_from_maven(defaults: dict, version: str, dest: Path) -> None:
    release = defaults["kafka_releases"][version]
    lock = REPO / "artifacts" / f"kafka-{version}-libs.lock"
    jars = read_jar_lock(lock)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        deps = "\n".join(
            f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version>"
            "<exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions>"
            "</dependency>"
            for g, a, v, _ in jars
        )
        (tmp / "pom.xml").write_text(
            '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
            "<groupId>cryptomon</groupId><artifactId>kafka-libs</artifactId><version>1</version>"
            f"<packaging>pom</packaging><dependencies>{deps}</dependencies></project>"
        )
        libs = tmp / "dist" / "libs"
        log(f"resolving {len(jars)} Kafka {version} jars from Maven Central")
        mvn("dependency:copy-dependencies", f"-DoutputDirectory={libs}", cwd=tmp)
        for g, a, v, digest in jars:
            jar = libs / f"{a}-{v}.jar"
            if not jar.exists():
                raise ArtifactError(f"{g}:{a}:{v} missing after maven resolution")
            verify(jar, digest)
        extra = sorted(set(p.name for p in libs.iterdir()) - {f"{a}-{v}.jar" for _, a, v, _ in jars})
        if extra:
            raise ArtifactError(f"unexpected jars resolved: {extra}")
        (tmp / "dist" / "MAVEN-BUILD.txt").write_text(
            f"Apache Kafka {version} (Scala {defaults['kafka_scala_version']}) libs/ "
            "assembled from Maven Central by cryptomon's scripts/fetch_artifacts.py;\n"
            f"jar checksums: artifacts/{lock.name}\n"
        )
        part = dest.with_suffix(".part")
        deterministic_tgz(tmp / "dist", f"kafka_{defaults['kafka_scala_version']}-{version}", part)
        verify(part, release["maven_dist_sha256"])
        part.rename(dest)


def _official_matches(path: Path, checksum: str) -> bool:
    algo, _, want = checksum.partition(":")
    h = hashlib.new(algo)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest() == want.lower()


def fetch_kafka(cache: Path, source: str) -> None:
    """Every release with pinned checksums (kafka_releases): the default one and the ones an
    upgrade goes to or from."""
    d = role_defaults("kafka")
    out = cache / "kafka"
    out.mkdir(parents=True, exist_ok=True)
    for version, release in d["kafka_releases"].items():
        ctx = {**d, "kafka_version": version}
        dest = out / render(d["kafka_archive_name"], ctx)
        if dest.exists() and (sha256_of(dest) == release["maven_dist_sha256"]
                              or _official_matches(dest, release["archive_checksum"])):
            log(f"kafka: {dest.name} cached and verified")
            continue
        if source in ("auto", "archive"):
            part = dest.with_suffix(".part")
            if try_download(render(d["kafka_archive_url"], ctx), part, timeout=15):
                if not _official_matches(part, release["archive_checksum"]):
                    raise ArtifactError(f"{part} does not match {release['archive_checksum']}")
                part.rename(dest)
                log(f"kafka: official {dest.name} downloaded and verified")
                continue
            if source == "archive":
                raise ArtifactError("Apache archive not reachable and --kafka-source=archive")
        build_kafka_from_maven(d, version, dest)
        log(f"kafka: {dest.name} built from Maven Central jars and verified")


def fetch_maven_jar(coordinate: str, dest: Path, sha256: str) -> None:
    """One jar from Maven Central (mvn, as configured on the controller) into dest, verified
    against its pinned sha256; a verified dest is kept."""
    if dest.exists() and sha256_of(dest) == sha256:
        log(f"{dest.parent.name}: {dest.name} cached and verified")
        return
    with tempfile.TemporaryDirectory() as tmp:
        mvn("dependency:copy", f"-Dartifact={coordinate}", f"-DoutputDirectory={tmp}", cwd=Path(tmp))
        got = Path(tmp) / dest.name
        if not got.exists():
            raise ArtifactError(f"{coordinate}: maven gave no {dest.name}")
        verify(got, sha256)
        shutil.copy2(got, dest)
    log(f"{dest.parent.name}: {dest.name} downloaded and verified")


def fetch_jmx_exporter(cache: Path) -> None:
    """The Prometheus JMX exporter agent the kafka role loads into every Kafka JVM."""
    d = role_defaults("kafka")
    out = cache / "kafka"
    out.mkdir(parents=True, exist_ok=True)
    version = d["kafka_jmx_exporter_version"]
    jar = render(d["kafka_jmx_exporter_jar"], d)
    fetch_maven_jar(f"io.prometheus.jmx:jmx_prometheus_javaagent:{version}", out / jar, d["kafka_jmx_exporter_sha256"])


# --- Flink --------------------------------------------------------------------------------

def fetch_connector(cache: Path) -> None:
    d = role_defaults("flink")
    out = cache / "flink"
    out.mkdir(parents=True, exist_ok=True)
    name = f"{d['flink_kafka_connector_artifact']}-{d['flink_kafka_connector_version']}.jar"
    coord = f"org.apache.flink:{d['flink_kafka_connector_artifact']}:{d['flink_kafka_connector_version']}"
    fetch_maven_jar(coord, out / name, d["flink_kafka_connector_sha256"])


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise ArtifactError(f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}{res.stderr[-3000:]}")


def fetch_wheels(cache: Path, name: str, requirements: Path) -> None:
    out = cache / "wheels" / name
    out.mkdir(parents=True, exist_ok=True)
    # --require-hashes makes pip check every file, cached or downloaded, against the lock.
    pip("download", "-q", "--no-deps", "--require-hashes", "-r", str(requirements), "-d", str(out))
    log(f"wheels/{name}: {len(list(out.iterdir()))} files verified against {requirements.relative_to(REPO)}")


def build_services_wheel(cache: Path) -> None:
    """Build the cryptomon wheel reproducibly (fixed timestamps, clean copy of services/), so an
    unchanged source gives a byte-identical wheel and a converge stays changed=0."""
    out = cache / "wheels" / "services"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "services"
        shutil.copytree(REPO / "services", src,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info", ".env"))
        built = Path(tmp) / "dist"
        cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(built), str(src)]
        res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"})
        if res.returncode != 0:
            raise ArtifactError(f"building the cryptomon wheel failed:\n{res.stdout[-3000:]}{res.stderr[-3000:]}")
        wheel = next(built.glob("cryptomon-*.whl"))
        dest = out / wheel.name
        if not dest.exists() or sha256_of(dest) != sha256_of(wheel):
            for old in out.glob("cryptomon-*.whl"):
                old.unlink()
            shutil.copy2(wheel, dest)
    log(f"wheels/services: {dest.name} built from services/")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="cache root (default: %(default)s)")
    ap.add_argument("--kafka-source", choices=["auto", "archive", "maven"], default="auto",
                    help="auto: Apache archive, else rebuild from Maven Central jars")
    ap.add_argument("--only", choices=["kafka", "flink", "services"], action="append",
                    help="fill only these parts (repeatable)")
    args = ap.parse_args(argv)
    cache = args.cache / "artifacts"
    parts = set(args.only or ["kafka", "flink", "services"])
    try:
        if "kafka" in parts:
            fetch_kafka(cache, args.kafka_source)
            fetch_jmx_exporter(cache)
            fetch_wheels(cache, "kafka-admin",
                         REPO / "roles" / "kafka_admin" / "files" / "requirements-kafka-admin.txt")
        if "flink" in parts:
            fetch_connector(cache)
            fetch_wheels(cache, "flink", REPO / "roles" / "flink" / "files" / "requirements-flink.txt")
        if "services" in parts and (REPO / "services" / "pyproject.toml").exists():
            fetch_wheels(cache, "services",
                         REPO / "roles" / "cryptomon_services" / "files" / "requirements-services.txt")
            build_services_wheel(cache)
    except ArtifactError as exc:
        print(f"[artifacts] ERROR: {exc}", file=sys.stderr)
        return 1
    log(f"cache ready at {cache}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
