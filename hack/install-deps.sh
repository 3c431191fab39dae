#!/usr/bin/env bash
# Installs what the tests use, when missing:
#   prometheus      (Debian) the real Prometheus server behind the Prometheus metric source,
#                   and promtool, which checks and unit-tests the chart's alert rules;
#   python3-grpcio  (Debian) gRPC C-core's proxyless xDS client, for e2e/interop;
#   chromium        (Debian) headless browser for the dashboard's e2e tests;
#   @grpc/grpc-js-xds (npm, into the user's cache dir under sluice/npm) grpc-js's
#                   proxyless xDS client, for e2e/interop.
set -euo pipefail
need=()
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || need+=(prometheus)
# Debian's interpreter: python3-grpcio is built for it, whatever python3 is first on PATH.
/usr/bin/python3 -c 'import grpc' >/dev/null 2>&1 || need+=(python3-grpcio)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "sluice: installing Debian packages: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# The npm client goes to the cache directory e2e/interop reads
# (os.UserCacheDir()/sluice/npm), pinned, installed once.
GRPC_JS_XDS_VERSION=1.14.1
npm_dir="${XDG_CACHE_HOME:-$HOME/.cache}/sluice/npm"
if ! grep -qs "\"version\": \"${GRPC_JS_XDS_VERSION}\"" "$npm_dir/node_modules/@grpc/grpc-js-xds/package.json"; then
  command -v npm >/dev/null 2>&1 || { echo "sluice: npm is needed for @grpc/grpc-js-xds (Node 20)" >&2; exit 1; }
  echo "sluice: installing @grpc/grpc-js-xds@${GRPC_JS_XDS_VERSION} into $npm_dir"
  mkdir -p "$npm_dir"
  [ -f "$npm_dir/package.json" ] || echo '{"private": true}' > "$npm_dir/package.json"
  (cd "$npm_dir" && npm install --no-audit --no-fund --silent "@grpc/grpc-js-xds@${GRPC_JS_XDS_VERSION}")
fi
