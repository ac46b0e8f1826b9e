#!/usr/bin/env bash
# How long the test world's Go builds take on a machine that has built nothing: a clean
# clone of HEAD, empty module and build caches (GOMODCACHE/GOCACHE in a fresh temporary
# folder), then each build script of testworld/setup.sh in its order. Prints one line per
# script: wall seconds, CPU seconds (user + system) and the 1-minute load average before and
# after, since on a shared machine the wall time says as much about the neighbours as about
# the build. Nothing outside the temporary folder is touched; it is removed at the end
# unless KEEP=1.
#
#   bash hack/cold-build-time.sh            # the three builds one by one, each measured
#   TOGETHER=1 bash hack/cold-build-time.sh # testworld/setup.sh as CI runs it: side by side
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d -t meshctl-cold-build.XXXXXX)
[[ "${KEEP:-0}" == 1 ]] || trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
git clone -q . "$work/repo"
export GOCACHE="$work/gocache" GOMODCACHE="$work/gomod"
load() { cut -d' ' -f1 /proc/loadavg; }
if [[ "${TOGETHER:-0}" == 1 ]]; then
  before=$(load)
  /usr/bin/time -f '%e %U %S' -o "$work/setup.time" \
    bash "$work/repo/testworld/setup.sh" >"$work/setup.log" 2>&1 \
    || { echo "setup failed; its log:" >&2; tail -n 40 "$work/setup.log" >&2; exit 1; }
  read -r wall user sys <"$work/setup.time"
  printf 'setup.sh (builds side by side)  wall %5.0f s  cpu %5.0f s  load %s -> %s  (%s, %s cores)\n' \
    "$wall" "$(python3 -c "print($user + $sys)")" "$before" "$(load)" \
    "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)"
  exit 0
fi
total_wall=0 total_cpu=0
for script in build-kube build-istiod build-helm; do
  before=$(load)
  /usr/bin/time -f '%e %U %S' -o "$work/$script.time" \
    bash "$work/repo/testworld/$script.sh" >"$work/$script.log" 2>&1 \
    || { echo "$script failed; its log:" >&2; tail -n 20 "$work/$script.log" >&2; exit 1; }
  read -r wall user sys <"$work/$script.time"
  cpu=$(python3 -c "print(round($user + $sys))")
  printf '%-13s wall %5.0f s  cpu %5d s  load %s -> %s\n' "$script" "$wall" "$cpu" "$before" "$(load)"
  total_wall=$(python3 -c "print(round($total_wall + $wall))")
  total_cpu=$((total_cpu + cpu))
done
printf '%-13s wall %5d s  cpu %5d s  (%s, %s cores)\n' total "$total_wall" "$total_cpu" \
  "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)"
