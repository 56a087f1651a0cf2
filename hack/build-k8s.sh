#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager and kube-scheduler from source through the
# Go module proxy, cached under $HIGGS_CACHE/k8s/<version>/bin so later runs take no time.
# k8s.io/kubernetes replaces its k8s.io/* staging modules with ./staging paths, which a module
# download does not carry: a wrapper module replaces each with its published v0.X.Y twin.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

K8S_VERSION="${K8S_VERSION:-$(pinned k8s)}"
out="$HIGGS_CACHE/k8s/$K8S_VERSION/bin"
components=(kube-apiserver kube-controller-manager kube-scheduler)

have_all() { for c in "${components[@]}"; do [[ -x "$out/$c" ]] || return 1; done; }
if have_all; then
  log "kubernetes $K8S_VERSION binaries cached in $out"
  exit 0
fi

command -v go >/dev/null || die "build-k8s" "Go is not installed; install Go >= 1.25 (apt-get install golang-go or the Go toolchain) and rerun"
staging_version="v0.${K8S_VERSION#v1.}"
work="$HIGGS_CACHE/k8s/$K8S_VERSION/src"
mkdir -p "$work" "$out"
cd "$work"

step "build-k8s: resolving k8s.io/kubernetes@$K8S_VERSION through the Go module proxy"
if [[ ! -f go.mod ]]; then
  cat > go.mod <<MOD
module higgs.local/k8sbuild

go 1.25
MOD
fi
# Staging modules: every k8s.io/* module that k8s.io/kubernetes replaces with ./staging/...
modfile="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod"
GOFLAGS=-mod=mod go mod download -x "k8s.io/kubernetes@$K8S_VERSION" >/dev/null 2>&1 \
  || die "build-k8s" "cannot download k8s.io/kubernetes@$K8S_VERSION from the Go module proxy ($(go env GOPROXY)); check network access to the proxy"
staging=$(grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$modfile" | awk '{print $1}' | sort -u)
[[ -n "$staging" ]] || die "build-k8s" "found no staging replaces in $modfile"
# The proxy does not carry every staging module at every patch release: fail early and name them.
missing=""
for m in $staging; do go mod download "$m@$staging_version" >/dev/null 2>&1 || missing="$missing $m@$staging_version"; done
[[ -z "$missing" ]] || die "build-k8s" "the Go module proxy lacks:$missing; pin another patch release of k8s in hack/versions.txt"
{
  echo "module higgs.local/k8sbuild"
  echo
  echo "go 1.25"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  for m in $staging; do echo "	$m => $m $staging_version"; done
  echo ")"
} > go.mod
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
GOFLAGS=-mod=mod go mod tidy -e >tidy.log 2>&1 || { tail -20 tidy.log >&2; die "build-k8s" "go mod tidy failed (log: $work/tidy.log)"; }

for c in "${components[@]}"; do
  [[ -x "$out/$c" ]] && continue
  step "build-k8s: compiling $c $K8S_VERSION (cold build: several minutes on 2 cores)"
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$out/$c.tmp" "k8s.io/kubernetes/cmd/$c" \
    >"build-$c.log" 2>&1 || { tail -30 "build-$c.log" >&2; die "build-k8s" "compiling $c failed (log: $work/build-$c.log)"; }
  mv "$out/$c.tmp" "$out/$c"
done
log "kubernetes $K8S_VERSION built into $out"
