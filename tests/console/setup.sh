#!/usr/bin/env bash
# What the console's browser test (tests/console/console.test.mjs, run by
# tests/it/console.rs) needs, installed when missing and a quick no-op otherwise:
# Debian's chromium (and chromium-driver), node and npm, and pinned playwright-core and
# axe-core from npm in a directory of their own (never inside the repository).
#   usage: tests/console/setup.sh        prints nothing on success but the install notes
#   env:   WPGATE_BROWSER_DIR (default /var/tmp/wpgate-browser)
set -euo pipefail

dir=${WPGATE_BROWSER_DIR:-/var/tmp/wpgate-browser}
playwright_version=1.65.2
axe_version=4.14.1
log=/tmp/wpgate-browser-setup.log

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "tests/console/setup.sh: installing ${need_apt[*]} (Debian)" >&2
    if ! {
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
    } >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "tests/console/setup.sh: apt-get failed (log $log)" >&2
        exit 1
    fi
fi

installed() {
    node -e "const r = require('module').createRequire('$dir/');
        process.exit(r('playwright-core/package.json').version === '$playwright_version' &&
            r('axe-core/package.json').version === '$axe_version' ? 0 : 1)" 2>/dev/null
}
if ! installed; then
    echo "tests/console/setup.sh: installing playwright-core $playwright_version and axe-core $axe_version (npm) in $dir" >&2
    mkdir -p "$dir"
    [ -e "$dir/package.json" ] || printf '{"name":"wpgate-browser","private":true}\n' >"$dir/package.json"
    if ! (cd "$dir" && npm install --no-audit --no-fund --save-exact \
        "playwright-core@$playwright_version" "axe-core@$axe_version") >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "tests/console/setup.sh: npm install failed (log $log)" >&2
        exit 1
    fi
    installed || { echo "tests/console/setup.sh: $dir still lacks the pinned packages" >&2; exit 1; }
fi
