#!/usr/bin/env bash
# A real control plane on 127.0.0.1 running topolet's scheduler stack, for humans.
#   tests/e2e/cluster.sh up   [--dir DIR]   build the binaries if needed, start everything
#   tests/e2e/cluster.sh down [--dir DIR]   stop it (DIR defaults to /tmp/topolet-e2e)
# Run from an activated virtualenv with topolet installed (pip install -e '.[test]').
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "${1:-}" = up ]; then
    python tests/e2e/build.py >/dev/null
fi
exec python -m tests.e2e.cluster "$@"
