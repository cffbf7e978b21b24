#!/usr/bin/env bash
# deps.sh — make sure the Debian packages ehrgate needs are installed.
#
#   scripts/deps.sh [run|test]
#
# run:  what building and running the gateway needs.
# test: that, plus the test tools (python3-paho-mqtt, Node.js for the FHIR
#       validator, clang for the sanitizer build).
# Installs with apt-get when root; otherwise prints the exact command and
# exits 1.
set -euo pipefail

what="${1:-run}"
pkgs=(cmake make gcc pkg-config mosquitto mosquitto-clients libpaho-mqtt-dev libssl-dev
      libmbedtls-dev libcjson-dev libcunit1-dev libsqlite3-dev sqlite3)
if [ "$what" = "test" ]; then
    pkgs+=(python3 python3-paho-mqtt nodejs npm xxd openssl clang)
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        # a tool may be present from elsewhere (e.g. node or cmake not from apt)
        case "$p" in
            nodejs) command -v node >/dev/null 2>&1 && continue ;;
            npm|cmake|make|gcc|python3) command -v "$p" >/dev/null 2>&1 && continue ;;
        esac
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" != 0 ]; then
    echo "ehrgate needs these Debian packages: ${missing[*]}" >&2
    echo "Install them as root, then run this again:" >&2
    echo "    sudo sh -c '$cmd'" >&2
    exit 1
fi
echo "== installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
