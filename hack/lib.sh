# Shared helpers for hack/ scripts: cache location, pinned versions, messages.
# shellcheck shell=bash
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
HIGGS_CACHE="${HIGGS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/higgs-k8s}"
export HIGGS_CACHE
bin="$HIGGS_CACHE/bin"  # where every tool goes

pinned() { awk -v k="$1" '$1 == k {print $2}' "$HACK_DIR/versions.txt"; }
log() { printf '[hack] %s\n' "$*" >&2; }
step() { printf '\n==> %s\n' "$*" >&2; }
# die STEP MESSAGE: one clear line naming the step and what to do.
die() { printf '\nERROR [%s]: %s\n' "$1" "$2" >&2; exit 1; }

# put SRC NAME: atomic install into $bin (a running binary is never overwritten in place).
put() { mkdir -p "$bin" && install -m 0755 "$1" "$bin/.$2.new" && mv -f "$bin/.$2.new" "$bin/$2"; }
