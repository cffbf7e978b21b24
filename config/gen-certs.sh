#!/usr/bin/env bash
# gen-certs.sh — a development certificate authority and certificates for
# every party of an ehrgate deployment, for Mosquitto's TLS listener with
# client certificates (config/mosquitto-tls.conf).
#
#   config/gen-certs.sh OUTDIR [IDENTITY...]
#
# Makes OUTDIR/ca.crt + ca.key (EC P-256, 10 years), OUTDIR/broker.crt +
# broker.key (CN localhost, SAN DNS:localhost, IP:127.0.0.1), and one client
# certificate IDENTITY.crt + IDENTITY.key per identity (default: gateway).
# The certificate's CN is the identity; the broker takes it as the MQTT
# username (use_identity_as_username), which the ACL written by
# `ehrctl acl` names: a device id (D00001), a hospital id (H1), a patient id
# (P00001), a grantee (authority), the gateway's user (gateway), an
# operator (admin). Existing files are kept, so it can be run again to add
# identities. Keys are mode 0600. For development and tests only: a
# production deployment gets its certificates from the operator's PKI.
set -euo pipefail

if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    sed -n '2,17p' "$0"
    [ $# -ge 1 ] && exit 0 || exit 2
fi
out="$1"
shift
ids=("$@")
[ ${#ids[@]} -eq 0 ] && ids=(gateway)
command -v openssl >/dev/null || { echo "gen-certs.sh: openssl is needed (apt-get install openssl)" >&2; exit 2; }
mkdir -p "$out"
chmod 0755 "$out" # the broker (user mosquitto) reads its files here; keys stay 0600
umask 077

for id in "${ids[@]}"; do
    case "$id" in
        *[!A-Za-z0-9._-]*|"") echo "gen-certs.sh: \"$id\": identities are 1-64 of A-Z a-z 0-9 . _ -" >&2; exit 2 ;;
    esac
done

if [ ! -f "$out/ca.key" ]; then
    openssl ecparam -name prime256v1 -genkey -noout -out "$out/ca.key"
    openssl req -x509 -new -key "$out/ca.key" -sha256 -days 3650 -subj "/CN=ehrgate development CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$out/ca.crt" 2>/dev/null
fi

issue() { # name cn extensions
    local name="$1" cn="$2" ext="$3"
    [ -f "$out/$name.crt" ] && return 0
    openssl ecparam -name prime256v1 -genkey -noout -out "$out/$name.key"
    openssl req -new -key "$out/$name.key" -subj "/CN=$cn" -out "$out/$name.csr" 2>/dev/null
    printf '%s\n' "$ext" > "$out/$name.ext"
    openssl x509 -req -in "$out/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
        -CAcreateserial -days 825 -sha256 -extfile "$out/$name.ext" -out "$out/$name.crt" 2>/dev/null
    rm -f "$out/$name.csr" "$out/$name.ext"
}

issue broker localhost "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1"
for id in "${ids[@]}"; do
    issue "$id" "$id" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
done
chmod 0644 "$out"/*.crt
# mosquitto started as root drops to the user mosquitto before it reads the
# broker key: give that user the key (still mode 0600)
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
    chown mosquitto "$out/broker.key"
fi
echo "gen-certs.sh: $out: ca.crt, broker.crt, ${ids[*]}"
