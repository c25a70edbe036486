#!/usr/bin/env bash
# scripts/deps.sh [build|test] - installs the Debian packages (and, for test, the npm client)
# that keelmq needs, only when something is missing. Idempotent and quick when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."

build_pkgs="gcc make liburing-dev android-libboringssl-dev libjemalloc-dev libxxhash-dev"
test_pkgs="libcriterion-dev mosquitto mosquitto-clients python3-paho-mqtt nodejs npm"
want="$build_pkgs"
[ "${1:-build}" = test ] && want="$build_pkgs $test_pkgs"

missing=()
for p in $want; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$p")
done
# nodejs/npm may come from elsewhere than Debian (a preinstalled node): accept a working one.
if command -v node >/dev/null && command -v npm >/dev/null; then
    filtered=()
    for p in "${missing[@]}"; do
        case "$p" in nodejs|npm) ;; *) filtered+=("$p") ;; esac
    done
    missing=("${filtered[@]}")
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ "${1:-build}" = test ] && [ ! -f tests/e2e/node_modules/mqtt/package.json ]; then
    echo "deps: installing MQTT.js into tests/e2e/node_modules" >&2
    (cd tests/e2e && npm install --no-audit --no-fund --silent >/dev/null)
fi
