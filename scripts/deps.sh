#!/usr/bin/env bash
# scripts/deps.sh - install every Debian 12 package pushgate needs.
#
#   bash scripts/deps.sh                 everything: build, run, test, browser
#   bash scripts/deps.sh --runtime-only  only what building + running needs
#   bash scripts/deps.sh --list [GROUP]  print the package list (no install)
#   bash scripts/deps.sh --no-npm        skip `npm ci` in tests/browser
#
# Idempotent and cheap when nothing is missing: one dpkg-query call decides,
# and `apt-get update` runs only when a package has to be installed, so a
# second run takes well under a second. Needs root (apt-get), as the README
# says; it does nothing as another user unless something is missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# THE package list: one place for every script, the README and CI.
#   build   compile the gateway (runtime libs come with the -dev packages)
#   run     run it locally (scripts/run.sh starts a redis-server if needed)
#   test    unit/integration/deploy tests, sanitizer builds, the bench
#   browser the browser tests (headless Chromium driven from Node.js)
# Kept as "package group" lines so a reader sees the whole list at once.
PACKAGES='
build-essential        build
cmake                  build
pkg-config             build
libwebsockets-dev      build
libwebsockets-evlib-uv build
libhiredis-dev         build
libuv1-dev             build
libjson-c-dev          build
libjwt-dev             build
libssl-dev             build
uthash-dev             build
redis-server           run
redis-tools            run
openssl                run
curl                   run
procps                 run
python3                run
clang                  test
libclang-rt-14-dev     test
libcmocka-dev          test
libevent-dev           test
nginx                  test
libnginx-mod-nchan     test
python3-pytest         test
python3-websockets     test
python3-redis          test
python3-cryptography   test
docker-compose         test
python3-yaml           test
golang-go              test
golang-github-gomodule-redigo-dev test
chromium               browser
nodejs                 browser
npm                    browser
'

die() { echo "deps.sh: $*" >&2; exit 1; }

groups="build run test browser"
do_npm=1
list_only=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runtime-only) groups="build run"; do_npm=0 ;;
        --all)          groups="build run test browser" ;;
        --no-npm)       do_npm=0 ;;
        --list)         list_only=1
                        if [ $# -gt 1 ] && [[ "$2" != --* ]]; then groups="$2"; shift; fi ;;
        -h|--help)      sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *)              die "unknown argument: $1 (try --help)" ;;
    esac
    shift
done

wanted=()
while read -r pkg grp; do
    [ -n "${pkg:-}" ] || continue
    case " $groups " in *" $grp "*) wanted+=("$pkg") ;; esac
done <<<"$PACKAGES"

if [ "$list_only" = 1 ]; then
    printf '%s\n' "${wanted[@]}"
    exit 0
fi

# Which of them are missing? One dpkg-query call ("ii" = installed and
# configured). Unknown names go to stderr and simply count as missing.
declare -A have=()
while read -r name abbrev; do
    [ "$abbrev" = "ii" ] && have[$name]=1
done < <(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${wanted[@]}" 2>/dev/null || true)

missing=()
for pkg in "${wanted[@]}"; do
    [ -n "${have[$pkg]:-}" ] && continue
    case "$pkg" in
        # A Node.js from another source (NodeSource's nodejs bundles npm) is
        # as good as Debian's, and Debian's npm package would fight it.
        nodejs) command -v node >/dev/null 2>&1 && continue ;;
        npm)    command -v npm  >/dev/null 2>&1 && continue ;;
    esac
    missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing packages (${missing[*]}); run as root: sudo bash scripts/deps.sh"
    echo "deps.sh: installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Another apt may hold the lock (unattended upgrades, a parallel job):
    # wait for it rather than fail.
    apt_opts=(-q -y -o DPkg::Lock::Timeout=600)
    for try in 1 2 3; do
        apt-get "${apt_opts[@]}" update && break
        [ "$try" = 3 ] && die "apt-get update failed"
        sleep 5
    done
    # No recommends: docker-compose would pull in the whole docker.io daemon,
    # chromium a desktop's worth of helpers; nothing here needs them.
    apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}"
fi

# Browser tests: their npm packages, only when the lock file changed since
# the last install (npm writes node_modules/.package-lock.json).
case " $groups " in *" browser "*) ;; *) do_npm=0 ;; esac
# npm_ci DIR: install DIR's npm packages from its lock file, only when the
# lock file changed since the last install (npm writes
# node_modules/.package-lock.json).
npm_ci() {
    local dir="$1" stamp="$1/node_modules/.package-lock.json"
    [ -f "$dir/package.json" ] || return 0
    if [ ! -f "$stamp" ] || [ "$dir/package.json" -nt "$stamp" ] ||
       { [ -f "$dir/package-lock.json" ] && [ "$dir/package-lock.json" -nt "$stamp" ]; }; then
        echo "deps.sh: npm install in ${dir#"$ROOT"/}"
        # Browsers come from Debian (/usr/bin/chromium); no npm package may
        # download one of its own (there is no route to do so here anyway).
        export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PUPPETEER_SKIP_DOWNLOAD=1
        if [ -f "$dir/package-lock.json" ]; then
            (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
        else
            (cd "$dir" && npm install --no-package-lock --no-audit --no-fund --loglevel=error)
        fi
        touch "$stamp" 2>/dev/null || true
    fi
}
if [ "$do_npm" = 1 ]; then
    npm_ci "$ROOT/tests/browser"     # Chromium tests of the demo page
    npm_ci "$ROOT/examples/node"     # the Node.js publishing example
fi
exit 0
