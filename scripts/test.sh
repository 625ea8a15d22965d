#!/usr/bin/env bash
# scripts/test.sh [--no-asan | --asan-only] [ctest args...] - the whole check.
#
#   sudo bash scripts/test.sh             what CI runs (.ci/run)
#   bash scripts/test.sh --no-asan -L unit   a quick local loop (no fuzzing)
#   --no-fuzz skips the fuzzers; PG_FUZZ_SECONDS sets their time (default 10)
#   PG_CTEST_JOBS sets how many tests run at once (default 4)
#
# 1. installs every package (scripts/deps.sh), npm packages of tests/browser;
# 2. builds build/ (RelWithDebInfo, -Werror, tests and bench on) and runs
#    ctest there: every label that exists (unit, integration, browser, deploy);
# 3. builds build-asan/ (Debug, AddressSanitizer + UBSan, leaks checked) and
#    runs the same suite there;
# 4. prints one closing line "summary: N passed, N failed, N skipped" and
#    exits non-zero if any build or test failed.
# Extra arguments go to both ctest runs (e.g. -L unit, -R recovery).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# Debian's python3 (with python3-pytest, -websockets, -redis) must win over
# any pyenv or venv python3 earlier on PATH, for the tests and for CMake.
export PATH="/usr/bin:/bin:$PATH"
JOBS=2
# Tests at once. Most of them wait (on sockets, Redis, timeouts) far more than
# they compute: the plain suite used 1.2 cores at 8 at once. 4 on 2 cores
# keeps the run near 10 minutes; a test that fails only under that load is a
# race to fix (the rerun below names it FLAKY), not a reason to go serial.
CTEST_JOBS=${PG_CTEST_JOBS:-4}

run_plain=1 run_asan=1 run_fuzz=1
ctest_args=()
for a in "$@"; do
    case "$a" in
        --no-asan)   run_asan=0 ;;
        --asan-only) run_plain=0 ;;
        --no-fuzz)   run_fuzz=0 ;;
        -h|--help)   sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *)           ctest_args+=("$a") ;;
    esac
done

t0=$(date +%s)
say() { echo "test.sh: $*"; }
passed=0 failed=0 skipped=0 problems=()

bash scripts/deps.sh || { say "deps.sh failed"; echo "summary: 0 passed, 1 failed"; exit 1; }

# failed_in LOG: the names ctest listed under "The following tests FAILED".
failed_in() {
    sed -n '/The following tests FAILED:/,$p' "$1" | grep -aE '^\s+[0-9]+ - ' |
        sed -E 's/^\s+[0-9]+ - ([^ ]+).*/\1/' | tr '\n' ' '
}

# stage NAME DIR cmake-args... : configure, build, ctest; adds to the counts.
stage() {
    local name="$1" dir="$2"; shift 2
    local log="$dir/ctest.log" t=$(date +%s)
    say "== $name: configure + build in ${dir#"$ROOT"/}"
    if ! cmake -S "$ROOT" -B "$dir" -DPG_BUILD_TESTS=ON -DPG_BUILD_BENCH=ON \
            -DPython3_EXECUTABLE=/usr/bin/python3 "$@" >"$dir/configure.log" 2>&1; then
        cat "$dir/configure.log"; problems+=("$name: configure failed"); failed=$((failed + 1)); return
    fi
    if ! cmake --build "$dir" -j"$JOBS"; then
        problems+=("$name: build failed"); failed=$((failed + 1)); return
    fi
    say "== $name: ctest"
    # --timeout is the default per test; a test's own TIMEOUT property wins.
    # --no-tests=error: a suite that registered nothing is a failure, not a pass.
    ctest --test-dir "$dir" --output-on-failure -j"$CTEST_JOBS" --timeout 300 \
          --no-tests=error "${ctest_args[@]}" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    # "100% tests passed, 0 tests failed out of 12"; skipped ones count as
    # passed there and are listed as "(Skipped)" under "did not run".
    local line total f s
    # -a: a test's output can hold any byte (the conformance suite sends
    # raw ones), and GNU grep then says "binary file matches" instead of the
    # line: the count was lost and the failed test never rerun.
    line=$(grep -aE '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1)
    if [ -n "$line" ]; then
        total=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$line")
        f=$(sed -E 's/.*passed, ([0-9]+) tests? failed.*/\1/' <<<"$line")
        # One rerun of the failed test files, alone: the integration suites
        # start real processes on a small loaded machine. A test that fails
        # again fails the run; one that passes is named as flaky in the
        # summary, so it stays visible and gets fixed rather than hidden.
        if [ "$f" -gt 0 ]; then
            local failed_names rerun_line rf
            failed_names=$(failed_in "$log")
            say "== $name: rerunning what failed: $failed_names"
            ctest --test-dir "$dir" --output-on-failure --timeout 300 --rerun-failed 2>&1 | tee "$log.rerun"
            rc=${PIPESTATUS[0]}
            rerun_line=$(grep -aE '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log.rerun" | tail -1)
            rf=$(sed -E 's/.*passed, ([0-9]+) tests? failed.*/\1/' <<<"$rerun_line")
            [ -n "$rf" ] || rf=$f
            if [ "$rf" -lt "$f" ]; then
                # name only those that passed the second time
                local still flaky=""
                still=$(failed_in "$log.rerun")
                local name_
                for name_ in $failed_names; do   # (t is the stage's start time)
                    case " $still " in *" $name_ "*) ;; *) flaky+="$name_ " ;; esac
                done
                problems+=("$name: FLAKY (failed once, passed on rerun): $flaky")
            fi
            f=$rf
        fi
        s=$(grep -acE '\(Skipped\)$' "$log" || true)
        passed=$((passed + total - f - s)); failed=$((failed + f)); skipped=$((skipped + s))
        [ "$f" -gt 0 ] && problems+=("$name: $f of $total tests failed")
    fi
    if [ "$rc" -ne 0 ] && { [ -z "$line" ] || [ "$f" -eq 0 ]; }; then
        problems+=("$name: ctest exited $rc"); failed=$((failed + 1))
    fi
    say "== $name: done in $(( $(date +%s) - t )) s"
}

if [ "$run_plain" = 1 ]; then
    mkdir -p build
    stage plain "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPG_WERROR=ON \
          -DPG_ASAN=OFF -DPG_UBSAN=OFF
fi

if [ "$run_asan" = 1 ]; then
    mkdir -p build-asan
    # abort_on_error turns any report, a leak included, into a failed test;
    # halt_on_error makes UBSan stop at the first finding instead of going on.
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    stage asan "$ROOT/build-asan" -DCMAKE_BUILD_TYPE=Debug -DPG_WERROR=ON \
          -DPG_ASAN=ON -DPG_UBSAN=ON
fi

# Fuzzers: each libFuzzer harness for a bounded time (tests/fuzz/run.sh
# builds them with clang, ASan and UBSan); a crash or report fails the run.
# Skipped when ctest arguments narrow the run (e.g. -L unit).
if [ "$run_fuzz" = 1 ] && [ ${#ctest_args[@]} -eq 0 ] && [ -f "$ROOT/tests/fuzz/run.sh" ]; then
    say "== fuzz: every harness for ${PG_FUZZ_SECONDS:-10} s"
    tf=$(date +%s)
    if sh "$ROOT/tests/fuzz/run.sh" "$ROOT/build-fuzz" "${PG_FUZZ_SECONDS:-10}"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1)); problems+=("fuzz: a harness failed (reproducers in build-fuzz/artifacts/)")
    fi
    say "== fuzz: done in $(( $(date +%s) - tf )) s"
fi

say "total time $(( $(date +%s) - t0 )) s"
hard=0
for p in "${problems[@]}"; do
    case "$p" in
        *FLAKY*) say "WARNING: $p" ;;
        *)       say "FAILED: $p"; hard=1 ;;
    esac
done
echo "summary: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$hard" -eq 0 ]
