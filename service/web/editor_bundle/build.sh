#!/bin/sh
# Build the web editor's CodeMirror 6 bundle from the npm registry (the versions are
# pinned in package.json and package-lock.json) into ../static/vendor/:
#   codemirror.js          one minified IIFE, the global MeltanoForgeEditor (editor.js)
#   codemirror.LICENSES.txt the license of every package in the bundle, with its version
# The built files are committed: the service serves them, and CI never runs npm.
# Run it after changing editor.js or a version:  service/web/editor_bundle/build.sh
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
mkdir -p ../static/vendor
./node_modules/.bin/esbuild editor.js --bundle --format=iife --minify --legal-comments=none \
  --target=es2020 --metafile=meta.json --outfile=../static/vendor/codemirror.js
node licenses.mjs meta.json ../static/vendor/codemirror.LICENSES.txt
rm meta.json
