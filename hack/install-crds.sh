#!/usr/bin/env bash
# Third-party CRDs whose kinds the charts render (HTTPRoute, ServiceMonitor, PrometheusRule,
# ScaledObject, ...), for the server-side dry-run of tests/chart/test_chart_crd_dry_run.py: upstream's
# own YAMLs, fetched through the Go module proxy into $HIGGS_CACHE/crds/<project>-<version>/.
#
# Nothing is generated here: each upstream generates these files from its Go API types with
# controller-gen (controller-tools) and commits them, so the module zips carry them:
#   gateway-api          hack/update-codegen.sh runs pkg/generator, controller-tools' crd generator
#                        -> config/crd/standard
#   prometheus-operator  Makefile generate-crds: controller-gen ... output:crd:dir=example/prometheus-operator-crd
#   keda                 Makefile manifests: controller-gen crd ... output:crd:artifacts:config=config/crd/bases
# The zip `go mod download` fetched is checked against sum.golang.org (reachable: no GOSUMDB change).
# Files are read from that verified zip, not its extracted folder: Go refuses to extract a module
# whose go.mod asks for a newer Go (gateway-api v1.7.0 wants 1.27), which matters only for building.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
py="${PYTHON:-python3}"
root="$HIGGS_CACHE/crds"

# One CRD set a line: <name in versions.txt> <project> <Go module> <folder in the module> <file globs...>
# It lands in $root/<project>-<pinned version>/. To add one: pin it in versions.txt, add a line here.
SETS=(
  "gateway-api gateway-api sigs.k8s.io/gateway-api config/crd/standard gateway.networking.k8s.io_*.yaml"
  "gateway-api-oldest gateway-api sigs.k8s.io/gateway-api config/crd/standard gateway.networking.k8s.io_*.yaml"
  "prometheus-operator prometheus-operator github.com/prometheus-operator/prometheus-operator example/prometheus-operator-crd monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_podmonitors.yaml monitoring.coreos.com_prometheusrules.yaml"
  "keda keda github.com/kedacore/keda/v2 config/crd/bases keda.sh_scaledobjects.yaml keda.sh_triggerauthentications.yaml keda.sh_clustertriggerauthentications.yaml"
)

# extract ZIP_JSON DEST PREFIX GLOB...: the matching files of the zip `go mod download -json` named.
EXTRACT='
import fnmatch, json, pathlib, sys, zipfile
info_file, dest, prefix, *globs = sys.argv[1:]
info = json.loads(pathlib.Path(info_file).read_text() or "{}")
if not info.get("Zip") or not info.get("Sum") or not pathlib.Path(info["Zip"]).is_file():
    sys.exit(info.get("Error") or "go mod download named no verified zip")
with zipfile.ZipFile(info["Zip"]) as z:
    for pattern in globs:
        hits = [n for n in z.namelist() if n.startswith(prefix) and fnmatch.fnmatch(n[len(prefix):], pattern)]
        if not hits:
            sys.exit(f"no file {prefix}{pattern} in the module zip")
        for name in hits:
            (pathlib.Path(dest) / name[len(prefix):]).write_bytes(z.read(name))
'

install_set() { # install_set PIN PROJECT MODULE FOLDER GLOB...
  local pin="$1" project="$2" module="$3" folder="$4"; shift 4
  local version; version="$(pinned "$pin")"
  [[ -n "$version" ]] || die "install-crds" "no '$pin' line in hack/versions.txt (format: '$pin vX.Y.Z')"
  local dest="$root/$project-$version" spec="$module@$version $folder $*"
  # The stamp holds the set's line: a changed file list re-extracts.
  [[ -f "$dest/.stamp" && "$(cat "$dest/.stamp")" == "$spec" ]] && return
  command -v go >/dev/null || die "install-crds" "Go is needed to fetch $module@$version from the Go module proxy; install Go >= 1.21"
  step "install-crds: $project $version CRDs from $module ($folder)"
  local tmp; tmp="$(mktemp -d)"
  # GOTOOLCHAIN=local: never download a newer Go toolchain to fetch a zip we only read.
  (cd "$tmp" && GOTOOLCHAIN=local go mod download -json "$module@$version" >"$tmp/info.json" 2>"$tmp/go.log") || true
  mkdir -p "$tmp/out"
  "$py" -c "$EXTRACT" "$tmp/info.json" "$tmp/out" "$module@$version/$folder/" "$@" 2>"$tmp/py.log" \
    || { cat "$tmp/go.log" "$tmp/py.log" >&2; rm -rf "$tmp"; die "install-crds" "cannot fetch the CRDs of $module@$version from the Go module proxy ($(go env GOPROXY)): see above; check access to the proxy and the version in hack/versions.txt"; }
  echo "$spec" >"$tmp/out/.stamp"
  mkdir -p "$root"; rm -rf "$dest"; mv "$tmp/out" "$dest"; rm -rf "$tmp"
  log "$project $version CRDs in $dest: $(cd "$dest" && ls ./*.yaml | wc -l) files"
}

for line in "${SETS[@]}"; do
  read -r -a words <<<"$line" # split into words without expanding the globs
  install_set "${words[@]}"
done
