#!/usr/bin/env bash
# Headless Chromium and its chromedriver from Debian, for the dashboard's browser tests,
# and npm for the charting library they draw with
# (Selenium drives the system browser; nothing is downloaded at test time).
# Only what is missing is installed: a machine whose Node.js came with its own npm (not
# Debian's) keeps it, since Debian's npm package conflicts with that nodejs.
set -euo pipefail
packages=()
command -v chromium >/dev/null || packages+=(chromium)
command -v chromedriver >/dev/null || packages+=(chromium-driver)
command -v npm >/dev/null || packages+=(npm)
if (( ${#packages[@]} )); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"
fi
