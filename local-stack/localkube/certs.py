"""Certificates for the local control plane, made with the openssl command line tool.

One CA signs everything: the etcd and kube-apiserver serving certificates, the client certificates of
each component and of the admin, plus a separate key pair that signs ServiceAccount tokens.
ECDSA P-256 keys: generated in milliseconds and accepted by every Kubernetes component.
Existing files are reused; a change of the parameters (ports, service range) regenerates them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .settings import Settings

CA_NAME = "higgs-localkube-ca"
VALID_DAYS = 3650  # a local dev cluster: certificates outlive the checkout


class CertError(Exception):
    """openssl failed or is missing."""


@dataclass(frozen=True)
class CertSpec:
    """One leaf certificate: its file stem, subject, usages and SANs."""

    stem: str
    common_name: str
    organization: str = ""
    server: bool = False
    client: bool = False
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()

    def subject(self) -> str:
        org = f"/O={self.organization}" if self.organization else ""
        return f"{org}/CN={self.common_name}"

    def extensions(self) -> str:
        usages = [u for u, on in (("serverAuth", self.server), ("clientAuth", self.client)) if on]
        lines = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={','.join(usages)}",
        ]
        sans = [f"DNS:{d}" for d in self.dns] + [f"IP:{i}" for i in self.ips]
        if sans:
            lines.append(f"subjectAltName={','.join(sans)}")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Pki:
    """Paths of the generated files (all under <state>/pki)."""

    root: Path
    leaves: tuple[CertSpec, ...] = field(default=())

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def front_proxy_ca_cert(self) -> Path:
        return self.root / "front-proxy-ca.crt"

    @property
    def front_proxy_ca_key(self) -> Path:
        return self.root / "front-proxy-ca.key"

    @property
    def sa_key(self) -> Path:
        return self.root / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.root / "sa.pub"

    def cert(self, stem: str) -> Path:
        return self.root / f"{stem}.crt"

    def key(self, stem: str) -> Path:
        return self.root / f"{stem}.key"


def leaf_specs(settings: Settings) -> tuple[CertSpec, ...]:
    local_dns = ("localhost",)
    local_ips = ("127.0.0.1",)
    return (
        CertSpec("etcd-server", "etcd", server=True, client=True, dns=local_dns, ips=local_ips),
        CertSpec("apiserver-etcd-client", "kube-apiserver-etcd-client", client=True),
        CertSpec(
            "apiserver",
            "kube-apiserver",
            server=True,
            dns=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ips=("127.0.0.1", settings.first_service_ip),
        ),
        CertSpec("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters", client=True),
        CertSpec("admin", "kubernetes-admin", "system:masters", client=True),
        CertSpec("controller-manager", "system:kube-controller-manager", client=True),
        CertSpec("scheduler", "system:kube-scheduler", client=True),
        # The node agent manages every fake node, so it acts as a cluster admin rather than one node.
        CertSpec("agent", "higgs-localkube-agent", "system:masters", client=True),
    )


def _openssl(*args: str, cwd: Path | None = None) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise CertError(
            "the openssl command is not installed; install it (apt-get install openssl) and rerun"
        )
    proc = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CertError(f"openssl {args[0]} failed: {proc.stderr.strip()[-400:]}")


def _new_ec_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    path.chmod(0o600)


def _make_ca(cert: Path, key: Path, name: str) -> None:
    _new_ec_key(key)
    _openssl(
        "req", "-x509", "-new", "-key", str(key), "-out", str(cert), "-days", str(VALID_DAYS),
        "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    )  # fmt: skip


def _make_leaf(pki: Pki, spec: CertSpec, scratch: Path) -> None:
    key, cert = pki.key(spec.stem), pki.cert(spec.stem)
    csr, ext = scratch / f"{spec.stem}.csr", scratch / f"{spec.stem}.ext"
    ext.write_text(spec.extensions())
    _new_ec_key(key)
    _openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", spec.subject())
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(pki.ca_cert), "-CAkey", str(pki.ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", str(VALID_DAYS), "-sha256", "-extfile", str(ext),
    )  # fmt: skip


def _make_sa_keys(pki: Pki) -> None:
    _new_ec_key(pki.sa_key)
    _openssl("pkey", "-in", str(pki.sa_key), "-pubout", "-out", str(pki.sa_pub))


def _valid_leaves(pki: Pki, specs: tuple[CertSpec, ...]) -> set[str]:
    """Stems whose certificate parses and chains to the CA (a crash mid-write leaves a broken file)."""
    present = [
        s.stem
        for s in specs
        if pki.cert(s.stem).exists() and pki.key(s.stem).exists() and pki.key(s.stem).stat().st_size > 0
    ]
    if not present:
        return set()
    exe = shutil.which("openssl") or "openssl"
    proc = subprocess.run(
        [exe, "verify", "-CAfile", str(pki.ca_cert), *(str(pki.cert(stem)) for stem in present)],
        capture_output=True,
        text=True,
        check=False,
    )
    ok_lines = {line.removesuffix(": OK") for line in proc.stdout.splitlines() if line.endswith(": OK")}
    return {stem for stem in present if str(pki.cert(stem)) in ok_lines}


def _ca_usable(pki: Pki) -> bool:
    if not (pki.ca_cert.exists() and pki.ca_key.exists()):
        return False
    proc = subprocess.run(
        [shutil.which("openssl") or "openssl", "x509", "-in", str(pki.ca_cert), "-noout"],
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0 and pki.ca_key.stat().st_size > 0


def _fingerprint(specs: tuple[CertSpec, ...]) -> str:
    return json.dumps([spec.__dict__ for spec in specs], sort_keys=True)


def ensure_pki(settings: Settings) -> tuple[Pki, bool]:
    """Create any certificate that is missing or out of date; return the paths and whether any changed."""
    specs = leaf_specs(settings)
    pki = Pki(settings.pki_dir, specs)
    pki.root.mkdir(parents=True, exist_ok=True)
    pki.root.chmod(0o700)
    stamp = pki.root / "spec.json"
    wanted = _fingerprint(specs)
    changed = False
    if not _ca_usable(pki):
        _make_ca(pki.ca_cert, pki.ca_key, CA_NAME)
        changed = True
    if not pki.front_proxy_ca_cert.exists():
        # Only its certificate is used: the apiserver publishes it as the request-header CA, which
        # controller-manager and scheduler expect to find (they log errors every few seconds otherwise).
        _make_ca(pki.front_proxy_ca_cert, pki.front_proxy_ca_key, "higgs-localkube-front-proxy-ca")
        changed = True
    if changed or not stamp.exists() or stamp.read_text() != wanted:
        # New CA or new parameters: every leaf is remade so none is signed by a stale CA or lacks a SAN.
        for spec in specs:
            pki.cert(spec.stem).unlink(missing_ok=True)
    valid = _valid_leaves(pki, specs)
    with tempfile.TemporaryDirectory(dir=pki.root) as tmp:
        for spec in specs:
            if spec.stem not in valid:
                _make_leaf(pki, spec, Path(tmp))
                changed = True
    if not (pki.sa_key.exists() and pki.sa_pub.exists() and pki.sa_pub.stat().st_size > 0):
        _make_sa_keys(pki)
        changed = True
    stamp.write_text(wanted)
    return pki, changed
