#!/usr/bin/env bash
# scripts/run.sh [pushgate options...] - build pushgate and run it locally.
#
#   sudo bash scripts/run.sh                       http://localhost:8080/
#   sudo bash scripts/run.sh --log-level debug     extra options pass through
#
# 1. installs what building and running need (scripts/deps.sh --runtime-only);
# 2. configures and builds build/ (RelWithDebInfo, gateway only);
# 3. unless a Redis is given (--redis-url or PUSHGATE_REDIS_URL) or one
#    already answers PING on 127.0.0.1:6379, starts a redis-server there,
#    daemonized, in build/run/redis/ (it keeps running after pushgate exits;
#    the banner says how to stop it);
# 4. execs build/gateway/pushgate with development defaults that any option
#    or PUSHGATE_* variable you give replaces: --listen 127.0.0.1:8080 (only
#    this machine, since the API key below is no secret), --api-key dev-key
#    and --public-topics 'news,public.*' (so the demo works without tokens).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="${PG_BUILD_DIR:-$ROOT/build}"
RUNDIR="$BUILD/run"
say() { echo "run.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# Which of our defaults did the caller already set? "--opt v" or "--opt=v",
# else the environment (a flag beats the environment, SPEC §1).
given() {            # given OPTION -> prints the value, returns 1 if unset
    local opt="$1" env="PUSHGATE_$(echo "${1#--}" | tr 'a-z-' 'A-Z_')" i
    local args=("${ARGS[@]}")
    for ((i = 0; i < ${#args[@]}; i++)); do
        case "${args[$i]}" in
            "$opt")   echo "${args[$((i + 1))]:-}"; return 0 ;;
            "$opt"=*) echo "${args[$i]#*=}"; return 0 ;;
        esac
    done
    if [ -n "${!env:-}" ]; then echo "${!env}"; return 0; fi
    return 1
}
ARGS=("$@")

# --help and --version need no Redis and no banner.
for a in "$@"; do
    case "$a" in --help|-h|--version) want_info=1 ;; esac
done

bash "$ROOT/scripts/deps.sh" --runtime-only

# Tests and bench are off here so that the runtime packages suffice;
# scripts/test.sh turns them back on in the same build directory.
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DPG_BUILD_TESTS=OFF -DPG_BUILD_BENCH=OFF -DPG_ASAN=OFF -DPG_UBSAN=OFF >/dev/null \
    || die "cmake configure failed"
cmake --build "$BUILD" --target pushgate -j"$(nproc)" || die "build failed"

BIN="$BUILD/gateway/pushgate"
[ -x "$BIN" ] || BIN="$BUILD/pushgate"
[ -x "$BIN" ] || die "no pushgate binary under $BUILD"

if [ -n "${want_info:-}" ]; then
    exec "$BIN" "$@"
fi

extra=()

listen=$(given --listen) || { listen="127.0.0.1:8080"; extra+=(--listen "$listen"); }
port="${listen##*:}"

if api_key=$(given --api-key); then
    key_note="(the one you gave)"
else
    api_key="dev-key"; key_note="$api_key"; extra+=(--api-key "$api_key")
fi

if ! topics=$(given --public-topics); then
    topics="news,public.*"; extra+=(--public-topics "$topics")
fi

redis_note=""
if ! redis_url=$(given --redis-url); then
    redis_url="redis://127.0.0.1:6379/0"
    pong=$(timeout 2 redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null || true)
    if [ "$pong" = "PONG" ]; then
        redis_note="using the Redis already on 127.0.0.1:6379"
    elif [ -n "$pong" ]; then
        die "something on 127.0.0.1:6379 answers PING with '$pong'; pass --redis-url"
    else
        mkdir -p "$RUNDIR/redis"
        # No persistence: a development Redis. Ids keep rising anyway (SPEC §3).
        redis-server --bind 127.0.0.1 --port 6379 --daemonize yes \
            --dir "$RUNDIR/redis" --pidfile "$RUNDIR/redis/redis.pid" \
            --logfile "$RUNDIR/redis/redis.log" --save '' --appendonly no \
            || die "redis-server did not start; see $RUNDIR/redis/redis.log"
        for _ in $(seq 50); do
            [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ] && break
            sleep 0.1
        done
        [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ] \
            || die "redis-server started but does not answer; see $RUNDIR/redis/redis.log"
        redis_note="started redis-server on 127.0.0.1:6379 (stop it: kill \$(cat $RUNDIR/redis/redis.pid))"
    fi
    extra+=(--redis-url "$redis_url")
else
    redis_note="using $redis_url"
fi

host="${listen%:*}"
case "$host" in 0.0.0.0|127.0.0.1|"::"|"[::]"|"") host=localhost ;; esac
cat >&2 <<EOF
------------------------------------------------------------------
 pushgate   http://$host:$port/        (demo page)
 API key    $key_note
 public     $topics   (anyone may subscribe; no token needed)
 Redis      $redis_note
 publish    curl -H 'Authorization: Bearer $( [ "$key_note" = dev-key ] && echo dev-key || echo '<api-key>')' \\
              -H 'Content-Type: application/json' \\
              -d '{"channel":"news","data":{"hello":"world"}}' \\
              http://$host:$port/api/publish
 receive    curl -N 'http://$host:$port/sse?channels=news'
 stop       Ctrl-C
------------------------------------------------------------------
EOF

exec "$BIN" "${extra[@]}" "$@"
