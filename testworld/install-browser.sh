#!/usr/bin/env bash
# Headless Chromium and its chromedriver from Debian, for the dashboard's browser tests,
# and npm for the charting library they draw with
# (Selenium drives the system browser; nothing is downloaded at test time).
set -euo pipefail
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null \
    || ! command -v npm >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver npm
fi
