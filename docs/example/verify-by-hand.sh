#!/usr/bin/env bash
# verify-by-hand.sh — docs/protocol.md §8's worked example, with nothing but
# coreutils, xxd, python3 (only to read JSON fields) and openssl: is entry.json
# included in a block signed by gateway.pub, per proof.json?
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
j() { python3 -c "import json,sys; d=json.load(open('proof.json')); print(eval(sys.argv[1]))" "$1"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
same() { [ "$1" = "$2" ] || { echo "FAILED: $3: $1 != $2" >&2; exit 1; }; }

# 1. leaf = SHA-256(0x00 || entry bytes as received)
leaf=$( (printf '\x00'; cat entry.json) | sha256sum | cut -d' ' -f1)
same "$leaf" "$(j "d['leaf_hash']")" "leaf hash"; echo "1. leaf hash matches: $leaf"

# 2. root from the audit path (a 2-leaf block, our leaf is index 1: right child)
root=$( (printf '\x01'; echo "$(j "d['audit_path'][0]")" "$leaf" | xxd -r -p) | sha256sum | cut -d' ' -f1)
same "$root" "$(j "d['block']['merkle_root']")" "merkle root"; echo "2. merkle root matches: $root"

# 3. the 125-byte header and its hash
hdr=$(j "'%02x' % d['block']['version'] + d['block']['gateway_id'] + '%016x' % d['block']['height'] + d['block']['prev_hash'] + d['block']['merkle_root'] + '%016x' % d['block']['first_seq'] + '%08x' % d['block']['count'] + '%016x' % d['block']['sealed_at']")
echo "$hdr" | xxd -r -p > "$tmp/header.bin"
same "$(stat -c %s "$tmp/header.bin")" 125 "header length"
hash=$(sha256sum "$tmp/header.bin" | cut -d' ' -f1)
same "$hash" "$(j "d['block']['hash']")" "header hash"; echo "3. header hash matches: $hash"

# 4. the signature over SHA-256(header), and gateway_id = SHA-256(DER SPKI)
j "d['block']['sig']" | base64 -d > "$tmp/sig.der"
openssl dgst -sha256 -verify gateway.pub -signature "$tmp/sig.der" "$tmp/header.bin" >/dev/null
echo "4. signature verifies with gateway.pub"
gid=$(openssl pkey -pubin -in gateway.pub -outform DER | sha256sum | cut -d' ' -f1)
same "$gid" "$(j "d['block']['gateway_id']")" "gateway_id"; echo "   gateway_id matches the key: $gid"
echo "OK: entry $(j "d['entry_id']") is in block $(j "d['block']['height']")"
