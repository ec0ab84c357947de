#!/usr/bin/env bash
# Measures the peer anchor figures recorded in BENCHMARKS.md, each on its own line:
#   1. govmomi 0.24.2 and pyVmomi decode MB/s on the 1000-VM envelopes (made by gen-payloads.sh)
#   2. govmomi listing of N VMs (default 10,000) with 5 properties against a separate vcsim
#      process: wall and client CPU per object
#   3. vcsim RetrievePropertiesEx throughput of the 4-property request over the same N VMs
#      (raw: server + HTTP; decode: plus govmomi decoding)
#   4. vcsim resident memory per VM: (RSS with N VMs - RSS with 0 VMs) / N, both after a GC
#      that returns freed memory to the OS
#
# Usage: peers/bench.sh [--vms N] [--python PATH]
#   --python defaults to $SDK_TEST_PYTHON, then target/py-venv/bin/python (made by ci/test.sh).
# Takes about 3-4 minutes on 2 cores with 10,000 VMs (vcsim needs ~25 s to create them).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
vms=10000
python=${SDK_TEST_PYTHON:-$root/target/py-venv/bin/python}
while [ $# -gt 0 ]; do
  case "$1" in
    --vms) vms=${2:?}; shift 2 ;;
    --python) python=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$python" ] || { echo "bench.sh: no Python with pyvmomi at $python (run ./ci/test.sh once, or pass --python)" >&2; exit 1; }

mapfile -t bins < <(peers/build.sh)
vcsim=${bins[0]} rpex=${bins[1]}
payloads="$root/target/payloads"
[ -f "$payloads/vms-1000-all.xml" ] && [ -f "$payloads/vms-1000-name-powerstate.xml" ] || peers/gen-payloads.sh --vms 1000

echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%F)"
echo "== 1. decode (1000-VM envelopes)"
"$rpex" decode -repeat 5 "$payloads/vms-1000-all.xml" "$payloads/vms-1000-name-powerstate.xml"
"$python" peers/pyvmomi/decode_bench.py --repeat 3 "$payloads/vms-1000-all.xml" "$payloads/vms-1000-name-powerstate.xml"

tmp=$(mktemp -d)
pid=""
stop() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
  pid=""
}
trap 'stop; rm -rf "$tmp"' EXIT

# start_vcsim N: starts the peer with N VMs and -stats; sets $pid and $url.
start_vcsim() {
  : >"$tmp/out"; : >"$tmp/err"
  "$vcsim" -vms "$1" -stats >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  url=""
  for _ in $(seq 1 3000); do   # up to 300 s
    url=$(head -n1 "$tmp/out" 2>/dev/null || true)
    [ -n "$url" ] && grep -q 'RSS' "$tmp/err" && break
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/err" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$url" ] || { echo "bench.sh: vcsim printed no URL" >&2; exit 1; }
}
rss_of() { sed -n 's/.*; RSS \([0-9]*\) KiB.*/\1/p' "$tmp/err"; }

echo "== 4a. vcsim with 0 VMs"
start_vcsim 0
cat "$tmp/err"
rss0=$(rss_of)
stop

echo "== 2./3./4b. vcsim with $vms VMs"
start_vcsim "$vms"
cat "$tmp/err"
rssn=$(rss_of)
"$rpex" list -url "$url" -n-props 5 -repeat 5
"$rpex" bench-rpex -url "$url" -repeat 3
stop
awk -v a="$rss0" -v b="$rssn" -v n="$vms" 'BEGIN { printf "vcsim RSS per VM: (%d - %d) KiB / %d = %.1f KiB\n", b, a, n, (b - a) / n }'
