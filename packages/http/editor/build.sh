#!/usr/bin/env bash
# Rebuild corral_http/web/editor.js from editor.mjs and the versions pinned in package-lock.json.
# Needs node and npm (Debian's `npm`) and the npm registry; the API never runs it: the bundle is
# committed, so a clone serves the playground without node. The banner names every package's
# version and the entry's sha256, which tests/test_pages.py checks against package-lock.json.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/../corral_http/web/editor.js"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/package.json" "$here/package-lock.json" "$here/editor.mjs" "$work/"
cd "$work"
npm ci --no-audit --no-fund --loglevel=error
banner=$(node -e '
const lock = require("./package-lock.json");
const crypto = require("crypto");
const fs = require("fs");
const names = Object.keys(lock.packages).filter((p) => p.startsWith("node_modules/") && !lock.packages[p].dev).sort();
const versions = names.map((p) => p.slice("node_modules/".length) + "@" + lock.packages[p].version);
const entry = crypto.createHash("sha256").update(fs.readFileSync("editor.mjs")).digest("hex");
console.log("/* corral playground editor, built by packages/http/editor/build.sh\n * entry editor.mjs sha256 " + entry + "\n * " + versions.join("\n * ") + "\n */");
')
node_modules/.bin/esbuild editor.mjs --bundle --format=iife --global-name=CorralEditor --minify \
  --target=es2020 --legal-comments=none --banner:js="$banner" --outfile="$work/editor.js" --log-level=warning
cp "$work/editor.js" "$out"
echo "wrote $out ($(wc -c <"$out") bytes)"
