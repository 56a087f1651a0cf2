#!/usr/bin/env bash
# Install prometheus and promtool into $HIGGS_CACHE/bin, built from source through the Go module proxy
# (as helm and the Kubernetes components are). Debian's `prometheus` package would be quicker, but Debian
# builds it without Kubernetes service discovery ("Kubernetes support has been completely removed",
# its NEWS.Debian; 2.42 in bookworm has none), which the observability tests need. Build tags keep only
# that discovery, halving the compile. Cached by version; the first build takes 5-10 minutes on two cores.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
mkdir -p "$bin"

# Prometheus's Go module versions are v0.3MM.P for Prometheus 3.MM.P.
module_version="$(pinned prometheus-module)"
[[ -n "$module_version" ]] || die "install-prometheus" "hack/versions.txt has no prometheus-module line"
IFS=. read -r _ mm patch <<<"$module_version"
version="3.$((10#$mm - 300)).$patch"
stamp="$bin/.prometheus-$module_version"
if [[ -x "$bin/prometheus" && -x "$bin/promtool" && -f "$stamp" ]]; then
  exit 0
fi
command -v go >/dev/null || die "install-prometheus" "Go is needed to build prometheus $version; install Go >= 1.26 (its go.mod asks for 1.26.7)"
step "install-prometheus: building prometheus and promtool $version from source through the Go module proxy"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
pkg="github.com/prometheus/prometheus/cmd"
ldflags="-s -w -X github.com/prometheus/common/version.Version=$version"
GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -tags remove_all_sd,enable_kubernetes_sd -ldflags "$ldflags" \
  "$pkg/prometheus@$module_version" "$pkg/promtool@$module_version" >"$tmp/build.log" 2>&1 \
  || { tail -20 "$tmp/build.log" >&2; die "install-prometheus" "building prometheus $version ($pkg/...@$module_version) failed; check that the Go module proxy is reachable"; }
for b in prometheus promtool; do put "$tmp/$b" "$b"; done
"$bin/prometheus" --version >/dev/null 2>&1 || die "install-prometheus" "$bin/prometheus does not run"
"$bin/promtool" --version >/dev/null 2>&1 || die "install-prometheus" "$bin/promtool does not run"
rm -f "$bin"/.prometheus-*; touch "$stamp"
log "prometheus $version in $bin"
