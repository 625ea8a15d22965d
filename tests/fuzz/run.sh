#!/bin/sh
# Build the libFuzzer harnesses with clang (no CMake) and run each one.
#   tests/fuzz/run.sh BUILD_DIR [SECONDS]     (SECONDS defaults to 30)
# Each harness compiles the common/*.c it needs directly, with
# -fsanitize=fuzzer,address,undefined, and runs for SECONDS over a copy of its
# seed corpus (the checked-in seeds stay untouched). Exit status is non-zero
# if a build fails or any harness finds a crash, leak, timeout or sanitizer
# report; its reproducer is left in BUILD_DIR/artifacts/<harness>/.
# Needs clang with the libFuzzer runtime (Debian 12: clang-14 and
# libclang-rt-14-dev) and pkg-config files for json-c, libjwt, openssl and
# hiredis (fuzz_topology feeds replies through its reader).
set -eu

if [ $# -lt 1 ]; then
    echo "usage: $0 BUILD_DIR [SECONDS]" >&2
    exit 2
fi
out=$1
secs=${2:-30}
here=$(cd "$(dirname "$0")" && pwd)
common=$here/../../common
cc=${CC_FUZZ:-clang}

mkdir -p "$out"
out=$(cd "$out" && pwd)

flags="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
-fno-sanitize-recover=undefined -std=c11 -D_GNU_SOURCE -I$common -I$common/../gateway \
$(pkg-config --cflags json-c libjwt openssl)"
libs="$(pkg-config --libs json-c libjwt openssl)"

# harness: the common sources it needs
srcs_fuzz_envelope="pg_msg.c pg_json.c pg_buf.c pg_util.c pg_chan.c"
srcs_fuzz_command="pg_cmd.c pg_json.c pg_buf.c pg_util.c pg_chan.c"
srcs_fuzz_channels="pg_chan.c pg_origin.c pg_url.c pg_util.c"
srcs_fuzz_token="pg_jwt.c pg_json.c pg_buf.c pg_util.c pg_chan.c"
srcs_fuzz_order="pg_order.c pg_json.c pg_buf.c pg_util.c pg_chan.c"
srcs_fuzz_since="pg_since.c pg_buf.c pg_util.c pg_chan.c"
srcs_fuzz_httphead="../gateway/httphead.c pg_buf.c pg_util.c"
srcs_fuzz_wsframe="../gateway/wsframe.c pg_buf.c pg_util.c"
srcs_fuzz_chunk="../gateway/httpchunk.c"
srcs_fuzz_slot="pg_slot.c pg_util.c"
srcs_fuzz_topology="../gateway/topology.c pg_slot.c pg_util.c"

harnesses=${FUZZ_HARNESSES:-"fuzz_envelope fuzz_command fuzz_channels fuzz_token fuzz_order fuzz_since fuzz_httphead fuzz_wsframe fuzz_chunk"}
# the cluster parsers of Redis' replies; fuzz_topology uses hiredis' reader
[ -n "${FUZZ_HARNESSES:-}" ] || harnesses="$harnesses fuzz_slot fuzz_topology"
libs="$libs $(pkg-config --libs hiredis)"

for h in $harnesses; do
    eval "srcs=\$srcs_$h"
    files=$here/$h.c
    for s in $srcs; do files="$files $common/$s"; done
    echo "== build $h"
    # shellcheck disable=SC2086
    $cc $flags -o "$out/$h" $files $libs
done

fail=0
for h in $harnesses; do
    corpus=$out/corpus/$h
    art=$out/artifacts/$h
    mkdir -p "$corpus" "$art"
    cp -f "$here/corpus/$h"/* "$corpus/" 2>/dev/null || true
    echo "== run $h for ${secs}s"
    if ! "$out/$h" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
            -max_len=4096 -print_final_stats=1 -artifact_prefix="$art/" \
            "$corpus" >"$out/$h.log" 2>&1; then
        echo "FAIL $h: see $out/$h.log; reproducer(s):" >&2
        ls "$art" >&2 || true
        tail -n 40 "$out/$h.log" >&2
        fail=1
    else
        grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$out/$h.log" | tr '\n' ' '
        echo
    fi
done
exit $fail
