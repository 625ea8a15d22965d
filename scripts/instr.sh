#!/usr/bin/env bash
# User-space instructions per delivery, counted by valgrind's callgrind: the
# way to compare two builds of the gateway on a shared or virtual machine,
# where CPU time per delivery moves by +-15 % from run to run (steal, other
# tenants) but an instruction count does not.
#
#   scripts/instr.sh [-g GATEWAY] [-b PUSHGATE_BENCH] [-r ROUNDS] [SCENARIO...]
#
# SCENARIOs (default: light users sse), scaled down for valgrind's ~50x:
#   light   1000 WS connections, broadcast at 20 msg/s   (the light / (b) / (c) path)
#   users   1000 users, one WS each, 100 msg/s to random users   ((d))
#   sse     500 SSE streams, broadcast at 20 msg/s   ((e))
#
# Each figure is a difference: the gateway is run twice from scratch, with M
# and with 3M messages, and (Ir(3M) - Ir(M)) / (deliveries(3M) -
# deliveries(M)) is what one more delivery costs, start-up, connecting and
# shutdown cancelling out. --ping-interval is 3600 so keepalive time does not
# leak into it (its cost is measured by `bench.sh idle`). Kernel time (the
# send itself, most of a delivery's CPU) is not counted: callgrind sees user
# space only. One JSON line per run on stdout. Needs valgrind (apt-get
# install valgrind); loopback only; every process started is stopped by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
GW=$ROOT/build/gateway/pushgate
BENCH=$ROOT/build/tools/bench/pushgate-bench
ROUNDS=1
while getopts "g:b:r:h" opt; do
    case $opt in
    g) GW=$OPTARG ;;
    b) BENCH=$OPTARG ;;
    r) ROUNDS=$OPTARG ;;
    h) sed -n '2,22p' "$0"; exit 0 ;;
    *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -eq 0 ] && SCENARIOS=(light users sse)
command -v valgrind >/dev/null || { echo "instr.sh: valgrind missing (apt-get install valgrind)" >&2; exit 2; }
[ -x "$GW" ] && [ -x "$BENCH" ] || { echo "instr.sh: $GW or $BENCH missing (-g / -b)" >&2; exit 2; }

TMP=$(mktemp -d /tmp/pushgate-instr.XXXXXX)
RPID=""
GPID=""
cleanup() {
    [ -n "$GPID" ] && kill "$GPID" 2>/dev/null && wait "$GPID" 2>/dev/null
    [ -n "$RPID" ] && kill "$RPID" 2>/dev/null && wait "$RPID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_ready() { # port
    local i
    for i in $(seq 1 600); do   # valgrind starts slowly: up to 60 s
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz")" = 200 ] && return 0
        sleep 0.1
    done
    echo "instr.sh: gateway not ready" >&2
    return 1
}

RP=$(free_port)
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" \
    --logfile "$TMP/redis.log" &
RPID=$!
until redis-cli -p "$RP" ping >/dev/null 2>&1; do sleep 0.1; done
SECRET=instr-secret

# run SCENARIO MESSAGES: sets IR and DL (instructions, deliveries)
run() {
    local sc=$1 m=$2 gp args
    redis-cli -p "$RP" flushall >/dev/null
    gp=$(free_port)
    valgrind --tool=callgrind --callgrind-out-file="$TMP/cg" "$GW" --listen "127.0.0.1:$gp" \
        --redis-url "redis://127.0.0.1:$RP" --jwt-secret "$SECRET" --allow-anonymous \
        --ping-interval 3600 --log-level warn >"$TMP/gw.log" 2>&1 &
    GPID=$!
    wait_ready "$gp"
    case $sc in
    light) args=(--transport ws --path /ws -c 1000 --publish raw --rate 20) ;;
    users) args=(--transport ws --path /ws -c 1000 --users 1000 --jwt-secret "$SECRET"
                 --channel user-random --publish raw --rate 100) ;;
    sse)   args=(--transport sse --path /sse -c 500 --publish raw --rate 20) ;;
    *) echo "instr.sh: unknown scenario $sc" >&2; exit 2 ;;
    esac
    "$BENCH" --host 127.0.0.1 --port "$gp" --redis-url "redis://127.0.0.1:$RP" "${args[@]}" \
        --messages "$m" --concurrency 20 --settle 1 --timeout 600 >"$TMP/bench.json" 2>"$TMP/bench.err" || {
        echo "instr.sh: pushgate-bench failed:" >&2; tail -3 "$TMP/bench.err" >&2; exit 1; }
    kill "$GPID"; wait "$GPID" || true; GPID=""
    IR=$(awk '/^summary:/{print $2}' "$TMP/cg")
    DL=$(python3 -c 'import json,sys
print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["deliveries"]["received"])' "$TMP/bench.json")
}

for r in $(seq 1 "$ROUNDS"); do
    for sc in "${SCENARIOS[@]}"; do
        case $sc in users) m=1000 ;; *) m=40 ;; esac
        run "$sc" "$m"; ir1=$IR; d1=$DL
        run "$sc" $((3 * m)); ir3=$IR; d3=$DL
        echo "{\"scenario\":\"$sc\",\"round\":$r,\"gateway\":\"$GW\",\"ir\":[$ir1,$ir3],\"deliveries\":[$d1,$d3],\"ir_per_delivery\":$(( (ir3 - ir1) / (d3 - d1) ))}"
    done
done
