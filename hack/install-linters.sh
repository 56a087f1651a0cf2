#!/usr/bin/env bash
# Install the manifest linters tests/chart/test_chart_linters.py runs over the charts' renders
# (idempotent, cached by version in $HIGGS_CACHE):
#   kube-score, kubesec      built from source through the Go module proxy into $HIGGS_CACHE/bin
#                            (kube-linter would be the third Go linter, but the Go module proxy does
#                            not serve golang.stackrox.io/kube-linter: every version answers 403)
#   checkov                  from PyPI into its own virtualenv $HIGGS_CACHE/checkov-venv (its many
#                            dependencies never touch the project's .venv), linked into $HIGGS_CACHE/bin
# With arguments, install only those (kube-score kubesec checkov); default: all three.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
mkdir -p "$bin"
py="${PYTHON:-python3}"

go_tool() { # go_tool NAME MODULE PACKAGE [VERSION_VAR]: build MODULE@<pinned NAME>'s PACKAGE into $bin/NAME
  local name="$1" mod="$2" pkg="$3" xvar="${4:-}" v
  v="$(pinned "$name")"
  [[ -n "$v" ]] || die "install-linters" "no '$name' line in hack/versions.txt"
  local stamp="$bin/.$name-$v"
  [[ -x "$bin/$name" && -f "$stamp" ]] && return
  command -v go >/dev/null || die "install-linters" "Go is needed to build $name $v; install Go >= 1.24"
  step "install-linters: building $name $v from source through the Go module proxy"
  # Download, then build inside the module: `go install MOD@V` also reads the proxy's version list,
  # which the proxy refuses (403) for some modules that it serves by exact version.
  local info dir
  info="$(go mod download -json "$mod@$v" 2>&1)" \
    || { echo "$info" >&2; die "install-linters" "cannot download $mod@$v from the Go module proxy"; }
  dir="$(printf '%s' "$info" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" \
    || die "install-linters" "go mod download $mod@$v named no source directory"
  local ldflags="-s -w"
  [[ -z "$xvar" ]] || ldflags+=" -X $xvar=$v"
  local tmp; tmp="$(mktemp -d)"
  (cd "$dir" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "$ldflags" -o "$tmp/$name" "$pkg") >"$tmp/build.log" 2>&1 \
    || { tail -20 "$tmp/build.log" >&2; die "install-linters" "building $name $v ($mod@$v) failed; check that the Go module proxy is reachable"; }
  put "$tmp/$name" "$name"; rm -rf "$tmp"; rm -f "$bin/.$name"-*; touch "$stamp"
}

install_checkov() {
  local v; v="$(pinned checkov)"
  [[ -n "$v" ]] || die "install-linters" "no 'checkov' line in hack/versions.txt"
  local venv="$HIGGS_CACHE/checkov-venv"
  local stamp="$venv/.checkov-$v"
  [[ -x "$venv/bin/checkov" && -f "$stamp" && -L "$bin/checkov" ]] && return
  step "install-linters: checkov $v from PyPI into $venv"
  if [[ ! -x "$venv/bin/python" ]]; then
    "$py" -m venv "$venv" || die "install-linters" "'$py -m venv $venv' failed; install python3-venv (Python >= 3.9)"
  fi
  local log; log="$(mktemp)"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "checkov==$v" >"$log" 2>&1 \
    || { tail -20 "$log" >&2; rm -f "$log"; die "install-linters" "pip could not install checkov==$v into $venv; check that PyPI is reachable"; }
  rm -f "$log" "$venv"/.checkov-*
  # A link, not a copy: the console script finds its venv through its own shebang.
  ln -sfn "$venv/bin/checkov" "$bin/checkov"
  touch "$stamp"
}

for c in "${@:-kube-score kubesec checkov}"; do
  for one in $c; do
    case "$one" in
      kube-score) go_tool kube-score github.com/zegl/kube-score ./cmd/kube-score main.version ;;
      kubesec) go_tool kubesec github.com/controlplaneio/kubesec/v2 . github.com/controlplaneio/kubesec/v2/cmd.version ;;
      checkov) install_checkov ;;
      *) die "install-linters" "unknown linter '$one' (expected kube-score, kubesec or checkov)" ;;
    esac
  done
done
