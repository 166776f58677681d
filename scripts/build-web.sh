#!/usr/bin/env bash
# Builds the web viewer (web/dist) when it is missing or older than its sources:
# `npm ci` when node_modules is missing or older than package-lock.json, then `vite build`.
set -euo pipefail
cd "$(dirname "$0")/../web"
if ! command -v npm >/dev/null; then
  echo "npm is needed to build the web viewer (apt-get install nodejs npm)" >&2
  exit 1
fi
# Vite 8 needs Node.js 20.19+ or 22.12+ (Debian 12's own nodejs is 18: use NodeSource's or newer)
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 22 || (a === 22 && b >= 12) || (a === 20 && b >= 19) ? 0 : 1)'; then
  echo "Node.js $(node --version) is too old to build the web viewer: 20.19+ or 22.12+ is needed" >&2
  exit 1
fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
stamp=dist/index.html
if [ -f "$stamp" ] && [ -z "$(find src index.html vite.config.ts tsconfig.json package-lock.json public \
    -newer "$stamp" -print -quit 2>/dev/null)" ]; then
  exit 0
fi
npx --no-install tsc --noEmit
npx --no-install vite build --logLevel warn
