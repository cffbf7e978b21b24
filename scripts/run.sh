#!/usr/bin/env bash
# run.sh — the one command that shows the whole system working (README
# "Run it").
#
#   scripts/run.sh [--duration S] [--devices N] [--patients N] [--hospitals N]
#                  [--data DIR] [--bin DIR] [--broker URL] [--no-demo]
#                  [ehrgate options...]
#
# Installs missing Debian packages (as root; otherwise prints the command),
# builds into build/ (or uses the binaries in --bin DIR), starts its own
# mosquitto on a free loopback port (unless --broker), and the gateway on
# DIR/ehrgate.db (default DIR: ./_run) with the grantee `authority`. Then the
# demo (unless --no-demo): a fleet registered through the signed admin API
# (default 200 devices, 50 patients, 3 hospitals); every second patient's
# app grants the authority consent for vital signs and lab results; the
# devices (with a few faults) and hospitals (FHIR + HL7 v2) publish; the
# authority's subscriber checks the inclusion proof of every record it gets
# and that no record of a non-consenting patient arrives. One live line shows
# it all. After --duration seconds (default: until Ctrl-C) everything drains
# and stops, and a summary and `ehrctl verify` end the run (exit 0 if all
# checks passed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

broker="" data="$root/_run" demo=1 bin="" duration=0 ndev=200 npat=50 nhosp=3 extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --broker) broker="$2"; shift 2 ;;
        --data) data="$2"; shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        --duration) duration="$2"; shift 2 ;;
        --devices) ndev="$2"; shift 2 ;;
        --patients) npat="$2"; shift 2 ;;
        --hospitals) nhosp="$2"; shift 2 ;;
        --no-demo) demo=0; shift ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) extra+=("$1"); shift ;;
    esac
done

if [ -z "$bin" ]; then
    bash scripts/deps.sh run
    echo "== building (build/)"
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build build -j "$(nproc 2>/dev/null || echo 2)" --target ehrgate ehrctl ehrgate-sim \
        >/dev/null
    bin="$root/build"
fi
gw="$bin/gateway/ehrgate"
ctl="$bin/tools/ehrctl"
sim="$bin/firmware-sim/ehrgate-sim"
mkdir -p "$data"
data=$(cd "$data" && pwd)
db="$data/ehrgate.db"
log="$data/ehrgate.log"

gwpid="" brokerpid="" simpids=() authpid="" status=0 started=0
rm -f "$data/devices.json" "$data/hospitals.json" "$data/authority.json"
stop_all() {
    local rc=$?
    trap - INT TERM EXIT
    [ "$rc" = 0 ] || status=1
    # the simulators drain first (they got Ctrl-C or their --duration ran
    # out), while the gateway and the broker still run
    for p in "${simpids[@]}" $authpid; do wait "$p" 2>/dev/null || status=1; done
    if [ -n "$gwpid" ]; then kill -TERM "$gwpid" 2>/dev/null || true; wait "$gwpid" 2>/dev/null || true; fi
    if [ -n "$brokerpid" ]; then kill -TERM "$brokerpid" 2>/dev/null || true; wait "$brokerpid" 2>/dev/null || true; fi
    if [ -f "$db" ] && [ "$started" = 1 ]; then
        echo
        echo "== summary"
        for f in devices hospitals authority; do
            [ -f "$data/$f.json" ] && echo "$f: $(cat "$data/$f.json" | sed 's/,"next_seq":{[^}]*}//')"
        done
        entries=$("$ctl" --db "$db" export | grep -c '"type":"entry"' || true)
        blocks=$("$ctl" --db "$db" export | grep -c '"type":"block"' || true)
        quarantined=$("$ctl" --db "$db" quarantine list | wc -l)
        echo "database: $entries entries in $blocks blocks, $quarantined rejected payloads in quarantine"
        echo "== ehrctl verify --master-key (links, signatures, Merkle roots; every entry decrypted and re-hashed)"
        if ! "$ctl" --db "$db" verify --master-key "$data/master.key"; then
            echo "verify FAILED"; status=1
        fi
        echo "logs: $log, $data/*.log; inspect: $ctl --db $db export --entries | head"
    fi
    exit "$status"
}
trap stop_all INT TERM EXIT

if [ -z "$broker" ]; then
    port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' 2>/dev/null || echo 18830)
    cat > "$data/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 100000
# also the MQTT v5 Receive Maximum the broker grants: the gateway's outbox
# publisher keeps up to 512 messages in flight
max_inflight_messages 1000
CONF
    # own session: Ctrl-C reaches the simulators, not the broker they need
    setsid /usr/sbin/mosquitto -c "$data/mosquitto.conf" >"$data/mosquitto.log" 2>&1 &
    brokerpid=$!
    broker="mqtt://127.0.0.1:$port"
    for _ in $(seq 50); do
        kill -0 "$brokerpid" 2>/dev/null || break
        (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
        sleep 0.1
    done
    if ! kill -0 "$brokerpid" 2>/dev/null; then
        echo "run.sh: mosquitto did not start:" >&2; tail -5 "$data/mosquitto.log" >&2
        brokerpid=""; exit 1
    fi
    echo "== mosquitto on 127.0.0.1:$port (log: $data/mosquitto.log)"
fi

[ -f "$data/admin.key" ] || "$ctl" keygen "$data/admin" >/dev/null
echo "== ehrgate --db $db --broker $broker --grantee authority:public-health (log: $log)"
: >> "$log"
ready0=$(grep -c ' ready' "$log" || true)
lines0=$(wc -l < "$log")
setsid "$gw" --db "$db" --key "$data/gateway.key" --master-key "$data/master.key" \
    --broker "$broker" --grantee authority:public-health --admin-pubkey "$data/admin.pub" \
    --stats-interval-s 1 "${extra[@]}" >>"$log" 2>&1 &
gwpid=$!
ready=0
for _ in $(seq 150); do
    [ "$(grep -c ' ready' "$log" || true)" -gt "$ready0" ] && { ready=1; break; }
    kill -0 "$gwpid" 2>/dev/null || break
    sleep 0.1
done
if [ "$ready" = 0 ]; then
    echo "run.sh: ehrgate did not become ready (broker $broker):" >&2
    tail -n +"$((lines0 + 1))" "$log" | tail -5 >&2
    exit 1
fi
started=1

if [ "$demo" = 0 ]; then
    echo "== running; Ctrl-C stops (gateway log: $log)"
    wait "$gwpid" || true
    exit 0
fi

common=(--broker "$broker" --state "$data/sim-state")
echo "== registering $npat patients (each with an app key), $ndev devices and $nhosp hospitals through the signed admin API"
"$sim" register "${common[@]}" --admin-key "$data/admin.key" --patients "$npat" \
    --devices "$ndev" --hospitals "$nhosp" --keys "$data/keys" --quiet
: > "$data/consented.txt"
granted=0
for i in $(seq 1 2 "$npat"); do
    p=$(printf 'P%05d' "$i")
    if "$sim" patient "${common[@]}" --id "$p" --key "$data/keys/$p.key" grant \
        --consent-id demo-authority --grantee authority --categories vital-signs,laboratory \
        >>"$data/patients.log" 2>&1; then
        echo "$p" >> "$data/consented.txt"
        granted=$((granted + 1))
    fi
done
echo "== $granted of $npat patients granted the authority consent (the others did not: their records must never reach it)"

run_for=()
[ "$duration" != 0 ] && run_for=(--duration "$duration")
auth_for=()
[ "$duration" != 0 ] && auth_for=(--duration "$((duration + 5))")
"$sim" authority "${common[@]}" --pubkey "$data/gateway.pub" --expect-file "$data/consented.txt" \
    --summary "$data/authority.json" --drain 20 "${auth_for[@]}" &
authpid=$!
"$sim" devices "${common[@]}" --count "$ndev" --rate 1 --fault range:0.002,duplicate:0.002,malformed:0.001 \
    --summary "$data/devices.json" --quiet "${run_for[@]}" >"$data/devices.log" 2>&1 &
simpids+=($!)
if [ "$nhosp" -gt 0 ]; then
    "$sim" hospitals "${common[@]}" --count "$nhosp" --patients "$npat" --rate 0.5 \
        --summary "$data/hospitals.json" --quiet "${run_for[@]}" >"$data/hospitals.log" 2>&1 &
    simpids+=($!)
fi
echo "== live: $ndev devices and $nhosp hospitals publishing; the authority checks every proof ($( [ "$duration" != 0 ] && echo "for $duration s" || echo "Ctrl-C to stop"))"
for p in "${simpids[@]}"; do wait "$p" || status=1; done
simpids=()
wait "$authpid" || status=1
authpid=""
