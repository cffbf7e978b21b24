#!/usr/bin/env bash
# run.sh — the one command that runs ehrgate for real (README "Run it").
#
#   scripts/run.sh [--broker URL] [--data DIR] [--no-demo] [ehrgate options...]
#
# Installs missing Debian packages (as root; otherwise prints the command),
# builds into build/, and starts the gateway on a SQLite file in DIR
# (default: ./_run). Without --broker it starts its own mosquitto on a free
# loopback port. Unless --no-demo is given, it registers a demo patient and
# two devices and publishes a reading every second, printing each receipt,
# so you can watch messages become committed, receipted entries. Ctrl-C
# stops everything cleanly and prints `ehrctl export` figures.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

broker="" data="$root/_run" demo=1 extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --broker) broker="$2"; shift 2 ;;
        --data) data="$2"; shift 2 ;;
        --no-demo) demo=0; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) extra+=("$1"); shift ;;
    esac
done

bash scripts/deps.sh run
echo "== building (build/)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)" --target ehrgate ehrctl >/dev/null
gw="$root/build/gateway/ehrgate"
ctl="$root/build/tools/ehrctl"
mkdir -p "$data"
db="$data/ehrgate.db"

pids=() gwpid="" brokerpid=""
cleanup() {
    trap - INT TERM EXIT
    # the gateway first, while the broker still runs, so it can say `offline`
    if [ -n "$gwpid" ]; then kill -TERM "$gwpid" 2>/dev/null || true; wait "$gwpid" 2>/dev/null || true; fi
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    if [ -n "$brokerpid" ]; then kill -TERM "$brokerpid" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    if [ -f "$db" ]; then
        echo
        echo "== what the database holds ($db)"
        entries=$("$ctl" --db "$db" export | grep -c '"type":"entry"' || true)
        quarantined=$("$ctl" --db "$db" quarantine list | wc -l)
        echo "entries: $entries, quarantined rejections: $quarantined"
        echo "== ehrctl verify (blocks: links, signatures, Merkle roots; entries decrypted and re-hashed)"
        "$ctl" --db "$db" verify --master-key "$data/master.key" 2>/dev/null || echo "verify FAILED"
        echo "inspect: $ctl --db $db export --entries | head"
    fi
}
trap cleanup INT TERM EXIT

if [ -z "$broker" ]; then
    port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' 2>/dev/null || echo 18830)
    cat > "$data/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
CONF
    # own session: Ctrl-C reaches the gateway, not the broker it still needs
    setsid /usr/sbin/mosquitto -c "$data/mosquitto.conf" >"$data/mosquitto.log" 2>&1 &
    brokerpid=$!
    broker="mqtt://127.0.0.1:$port"
    for _ in $(seq 50); do
        (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
        sleep 0.1
    done
    echo "== mosquitto on 127.0.0.1:$port (log: $data/mosquitto.log)"
fi
host=${broker#*://}; host=${host%:*}; port=${broker##*:}

if [ "$demo" = 1 ]; then
    "$ctl" --db "$db" register patient DEMO-P1 >/dev/null 2>&1 || true
    "$ctl" --db "$db" register device DEMO-OX1 --patient DEMO-P1 --type pulse_oximeter \
        >/dev/null 2>&1 || true
    "$ctl" --db "$db" register device DEMO-BP1 --patient DEMO-P1 --type bp_monitor \
        >/dev/null 2>&1 || true
    "$ctl" --db "$db" register hospital DEMO-H1 --utc-offset +01:00 >/dev/null 2>&1 || true
    "$ctl" --db "$db" register patient DEMO-P2 --mrn DEMO-H1:MRN-0001 >/dev/null 2>&1 || true
fi

echo "== ehrgate --db $db --broker $broker"
"$gw" --db "$db" --key "$data/gateway.key" --master-key "$data/master.key" \
    --broker "$broker" "${extra[@]}" &
gwpid=$!

if [ "$demo" = 1 ]; then
    sleep 1
    mosquitto_sub -h "$host" -p "$port" -V mqttv5 -t 'ehr/device/+/receipts' \
        -t 'ehr/hospital/+/receipts' -t 'ehr/gateway/+/status' -t 'ehr/anchor/+/head' -v &
    pids+=($!)
    seq0=$(( $(date +%s) * 10 ))
    i=0
    echo "== demo: DEMO-OX1 and DEMO-BP1 publish a reading a second (every 5th out of range);"
    echo "   DEMO-H1 sends an HL7 v2 ORU^R01 every 5 s; blocks are sealed every second"
    while kill -0 "$gwpid" 2>/dev/null; do
        now=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
        spo2=$(( 94 + RANDOM % 6 ))
        [ $(( i % 5 )) = 4 ] && spo2=150
        mosquitto_pub -h "$host" -p "$port" -V mqttv5 -q 1 -t ehr/device/DEMO-OX1/telemetry \
            -m "{\"seq\":$(( seq0 + i )),\"ts\":\"$now\",\"readings\":[{\"type\":\"spo2\",\"value\":$spo2},{\"type\":\"heart_rate\",\"value\":$(( 60 + RANDOM % 30 ))}]}"
        mosquitto_pub -h "$host" -p "$port" -V mqttv5 -q 1 -t ehr/device/DEMO-BP1/telemetry \
            -m "{\"seq\":$(( seq0 + i )),\"ts\":\"$now\",\"readings\":[{\"type\":\"blood_pressure\",\"systolic\":$(( 110 + RANDOM % 30 )),\"diastolic\":$(( 70 + RANDOM % 15 )),\"unit\":\"mmHg\"}]}"
        if [ $(( i % 5 )) = 0 ]; then
            dtm=$(date -u +%Y%m%d%H%M%S)
            printf 'MSH|^~\\&|LAB|DEMO-H1|EHRGATE|NAT|%s||ORU^R01^ORU_R01|DEMO%s|P|2.5.1\rPID|1||MRN-0001^^^DEMO-H1^MR\rOBR|1||L%s|24331-1^Lipid panel^LN|||%s+0000\rOBX|1|NM|2093-3^Cholesterol^LN||%s|mg/dL|<200|N|||F\rOBX|2|NM|8867-4^Heart rate^LN||%s|bpm||N|||F\r' \
                "$dtm" "$(( seq0 + i ))" "$i" "$dtm" "$(( 150 + RANDOM % 60 ))" "$(( 60 + RANDOM % 30 ))" |
                mosquitto_pub -h "$host" -p "$port" -V mqttv5 -q 1 -t ehr/hospital/DEMO-H1/records -s
        fi
        i=$(( i + 1 ))
        sleep 1
    done
else
    wait "$gwpid"
fi
