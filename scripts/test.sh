#!/usr/bin/env bash
# test.sh — the one command that runs every test (README "Run all tests").
#
#   scripts/test.sh            deps, build, unit + integration tests, then the
#                              same suite again under AddressSanitizer + UBSan,
#                              then the libFuzzer targets (clang): every seed
#                              replayed and 20 s of fuzzing each
#   scripts/test.sh --quick    skip the sanitizer and fuzz passes
#
# Builds in build/ and build-asan/. Every integration test starts its own
# mosquitto on a free loopback port; nothing is assumed to be running.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

quick=0
for a in "$@"; do
    case "$a" in
        --quick) quick=1 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "test.sh: unknown option $a" >&2; exit 2 ;;
    esac
done

bash scripts/deps.sh test
jobs=$(nproc 2>/dev/null || echo 2)

run_suite() {
    local dir="$1"; shift
    echo "== configure and build ($dir)"
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
    cmake --build "$dir" -j "$jobs"
    echo "== tests ($dir)"
    (cd "$dir" && ctest --output-on-failure --timeout 900)
}

start=$(date +%s)
run_suite build
if [ "$quick" = 0 ]; then
    # ASan + UBSan: any report aborts the process, so the tests fail on it.
    export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:strict_string_checks=1"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
    run_suite build-asan -DEHRGATE_SANITIZE=ON
    echo "== fuzz targets (build-fuzz, clang + libFuzzer)"
    CC=clang cmake -S tests/fuzz -B build-fuzz -DEHRGATE_FUZZ=ON >/dev/null
    cmake --build build-fuzz -j "$jobs"
    (cd build-fuzz && ctest --output-on-failure -L 'fuzz-corpus|fuzz-run')
fi
echo "== all tests passed in $(( $(date +%s) - start )) s"
