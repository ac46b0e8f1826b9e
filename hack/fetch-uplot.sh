#!/usr/bin/env bash
# uPlot, the charting library of the dashboard and the HTML reports, from the npm registry
# at install time (`make install`) into meshctl/web/assets/vendor/, which git ignores: the
# package serves it from there, and a report inlines it, so nothing is loaded from the
# network when a page is viewed. The version and the tarball's checksum are pinned here.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.6.32
INTEGRITY="sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw=="
dest=meshctl/web/assets/vendor
stamp="$dest/uplot-$VERSION.stamp"
[ -f "$stamp" ] && exit 0
# Without npm, `make install` goes on (meshctl runs; the dashboard and reports say what is
# missing); the test world (REQUIRE_UPLOT=1, after installing npm) needs it.
if ! command -v npm >/dev/null; then
  echo "fetch-uplot: npm not found, so no uPlot $VERSION: the dashboard and HTML reports" \
    "need it (apt-get install npm, then make install)" >&2
  exit "${REQUIRE_UPLOT:-0}"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "uplot@$VERSION" >/dev/null)
tarball="$tmp/uplot-$VERSION.tgz"
got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$got" != "$INTEGRITY" ]; then
  echo "fetch-uplot: uplot-$VERSION.tgz has checksum $got, expected $INTEGRITY" >&2
  exit 1
fi
tar -xzf "$tarball" -C "$tmp" package/dist/uPlot.iife.min.js package/dist/uPlot.min.css \
  package/LICENSE
mkdir -p "$dest"
cp "$tmp/package/dist/uPlot.iife.min.js" "$tmp/package/dist/uPlot.min.css" "$dest/"
cp "$tmp/package/LICENSE" "$dest/uPlot.LICENSE"
touch "$stamp"
