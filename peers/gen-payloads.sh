#!/usr/bin/env bash
# Generates SOAP response payloads from govmomi's simulator: starts the vcsim peer with N VMs,
# dumps with rpex
#   (a) vms-N-all.xml             RetrievePropertiesEx of all properties of all VMs
#   (b) vms-N-name-powerstate.xml RetrievePropertiesEx of name,runtime.powerState of all VMs
# into the output directory (raw response envelopes, byte for byte as received), then stops it.
#
# With --describe, also writes FILE.govmomi.json and FILE.pyvmomi.json beside each envelope:
# what govmomi (`rpex decode -describe`) and pyVmomi (`decode_bench.py --describe`, run with
# $SDK_TEST_PYTHON or target/py-venv/bin/python) decoded, oracles for decoder tests.
#
# Usage: peers/gen-payloads.sh [--vms N] [--out DIR] [--describe]   (defaults: 1000 VMs, target/payloads)
# The small committed fixtures were made with:
#   peers/gen-payloads.sh --vms 4 --out vsphere-client/tests/fixtures/govmomi --describe
#
# The inventory is vcsim's default VPX topology (1 datacenter, 1 standalone host, 1 cluster of
# 3 hosts, 1 datastore, 1 DVS portgroup) with N/2 VMs in each of its two resource pools, so N
# must be even.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
vms=1000
out="$root/target/payloads"
describe=0
while [ $# -gt 0 ]; do
  case "$1" in
    --vms) vms=${2:?--vms needs a number}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --describe) describe=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gen-payloads.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$vms" in ''|*[!0-9]*) echo "gen-payloads.sh: --vms must be a number, got '$vms'" >&2; exit 2 ;; esac

python=${SDK_TEST_PYTHON:-$root/target/py-venv/bin/python}
if [ "$describe" = 1 ] && [ ! -x "$python" ]; then
  echo "gen-payloads.sh: --describe needs the pyVmomi venv ($python); run ./ci/test.sh once or set SDK_TEST_PYTHON" >&2
  exit 1
fi

mapfile -t bins < <(peers/build.sh)
vcsim=${bins[0]} rpex=${bins[1]}
mkdir -p "$out"

tmp=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

"$vcsim" -vms "$vms" >"$tmp/stdout" 2>"$tmp/stderr" &
pid=$!
url=""
for _ in $(seq 1 1200); do   # up to 120 s for a large model
  url=$(head -n1 "$tmp/stdout" 2>/dev/null || true)
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || { echo "gen-payloads.sh: vcsim exited:" >&2; cat "$tmp/stderr" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "gen-payloads.sh: vcsim printed no URL within 120 s" >&2; exit 1; }

"$rpex" dump -url "$url" -props all -out "$out/vms-$vms-all.xml"
"$rpex" dump -url "$url" -props name,runtime.powerState -out "$out/vms-$vms-name-powerstate.xml"

if [ "$describe" = 1 ]; then
  for f in "$out/vms-$vms-all.xml" "$out/vms-$vms-name-powerstate.xml"; do
    "$rpex" decode -describe "$f" >"${f%.xml}.govmomi.json"
    "$python" peers/pyvmomi/decode_bench.py --describe "$f" >"${f%.xml}.pyvmomi.json"
    echo "${f%.xml}.govmomi.json"
    echo "${f%.xml}.pyvmomi.json"
  done
fi
