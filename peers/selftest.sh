#!/usr/bin/env bash
# End-to-end check that the peers work together on this machine (about 10 s once built):
# builds the Go peers, starts vcsim (default 4-VM inventory, user/password restricted), then
#   - pyVmomi smoke.py lists the 4 VMs over http (and a wrong password is refused),
#   - the REST session endpoint answers,
#   - rpex dumps both envelope kinds, and govmomi and pyVmomi both decode 4 objects from each,
#   - rpex list and bench-rpex see the 4 VMs,
# and stops vcsim, checking that it exits 0 and removed its datastore temp dir.
# Prints "peers selftest: ok" on success; exits non-zero with a message otherwise.
#
# Usage: peers/selftest.sh [--python PATH]   (default $SDK_TEST_PYTHON, then target/py-venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
python=${SDK_TEST_PYTHON:-$root/target/py-venv/bin/python}
[ "${1:-}" = "--python" ] && python=${2:?--python needs a path}
[ -x "$python" ] || { echo "selftest: no Python with pyvmomi at $python (run ./ci/test.sh once, or pass --python)" >&2; exit 1; }

fail() { echo "peers selftest: FAILED: $*" >&2; exit 1; }
mapfile -t bins < <(peers/build.sh)
vcsim=${bins[0]} rpex=${bins[1]}
tmp=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT

"$vcsim" -user alice -password 'pa ss:w@rd' -stats >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 1 100); do [ -s "$tmp/out" ] && break; sleep 0.1; done
url=$(head -n1 "$tmp/out")
[ -n "$url" ] || fail "vcsim printed no URL: $(cat "$tmp/err")"
tmpdir=$(ls -dt /tmp/govcsim-DC0-LocalDS_0-* 2>/dev/null | head -n1 || true)   # newest = ours

"$python" peers/pyvmomi/smoke.py "$url" >"$tmp/smoke.json" || fail "smoke.py against $url"
"$python" - "$tmp/smoke.json" <<'PY' || fail "smoke.py summary"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["vm_count"] == 4, s["vm_count"]
assert s["power_states"] == {"poweredOn": 4}, s["power_states"]
assert s["server"]["apiType"] == "VirtualCenter", s["server"]
assert all(r["name"].startswith("DC0_") for r in s["vms_sample"]), s["vms_sample"]
PY
bad=${url/alice:*@/alice:wrong@}
if "$python" peers/pyvmomi/smoke.py "$bad" >/dev/null 2>"$tmp/bad.err"; then fail "a wrong password was accepted"; fi
grep -q InvalidLogin "$tmp/bad.err" || fail "wrong password: unexpected error $(cat "$tmp/bad.err")"
grep -q 'pa ss' "$tmp/bad.err" "$tmp/smoke.json" && fail "the password leaked into the output"

"$python" - "$url" <<'PY' || fail "REST session"
import base64, json, sys, urllib.request
from urllib.parse import urlsplit, unquote
u = urlsplit(sys.argv[1])
req = urllib.request.Request(f"http://{u.hostname}:{u.port}/rest/com/vmware/cis/session", method="POST")
cred = base64.b64encode(f"{unquote(u.username)}:{unquote(u.password)}".encode()).decode()
req.add_header("Authorization", "Basic " + cred)
with urllib.request.urlopen(req) as r:
    assert r.status == 200 and json.load(r)["value"], "no session id"
    assert "vmware-api-session-id=" in r.headers.get("Set-Cookie", "")
PY

"$rpex" dump -url "$url" -props all -out "$tmp/all.xml" >/dev/null
"$rpex" dump -url "$url" -props name,runtime.powerState -out "$tmp/np.xml" >/dev/null
for f in all np; do
  head -c 200 "$tmp/$f.xml" | grep -q '^<?xml' || fail "$f.xml is not a raw XML envelope"
  g=$("$rpex" decode -repeat 1 -json "$tmp/$f.xml" | sed -n 's/.*"objects":\([0-9]*\).*/\1/p')
  p=$("$python" peers/pyvmomi/decode_bench.py --repeat 1 --json "$tmp/$f.xml" | sed -n 's/.*"objects": \([0-9]*\).*/\1/p')
  [ "$g" = 4 ] && [ "$p" = 4 ] || fail "$f.xml: govmomi decoded '$g' objects, pyVmomi '$p' (want 4)"
done
"$rpex" list -url "$url" -repeat 1 -json | grep -q '"objects":4,' || fail "rpex list"
"$rpex" bench-rpex -url "$url" -repeat 1 -json | grep -c '"objects":4,' | grep -qx 2 || fail "rpex bench-rpex"

kill -TERM "$pid"
wait "$pid" || fail "vcsim exited with status $? on SIGTERM"
pid=""
[ -z "$tmpdir" ] || [ ! -e "$tmpdir" ] || fail "vcsim left $tmpdir behind"
echo "peers selftest: ok"
