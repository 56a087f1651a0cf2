#!/usr/bin/env bash
# make cluster-up|cluster-down|cluster-status: a thin wrapper around `higgs-localkube` (local-stack/).
#   bash hack/cluster.sh up | down [--purge] | status | env
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cli="$REPO_ROOT/.venv/bin/higgs-localkube"
[[ -x "$cli" ]] || die "cluster" "$cli is missing; run \`make venv\` (or \`make test\`) first to create the virtualenv"
export PATH="$HIGGS_CACHE/bin:$PATH"
# The project root the local stack works with (hack/, charts/, .cache/cluster): this checkout.
export HIGGS_REPO_ROOT="${HIGGS_REPO_ROOT:-$REPO_ROOT}"
exec "$cli" "$@"
