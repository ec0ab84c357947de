#!/usr/bin/env bash
# Builds the Go interop peers (govmomi 0.24.2 from Debian, GOPATH mode) into target/peers/bin/
# and prints the path of each binary, one per line: vcsim first, then rpex.
#
# Cached: a binary is rebuilt only when its sources, the Go toolchain or the govmomi package
# changed (a sha256 stamp beside each binary); Go's own build cache lives in target/peers/gocache.
# Needs the Debian packages golang-go and golang-github-vmware-govmomi-dev (ci/apt-packages.txt).
#
# Usage: peers/build.sh            (from anywhere)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bin="$root/target/peers/bin"
gopath_pkgs=/usr/share/gocode
govmomi_src="$gopath_pkgs/src/github.com/vmware/govmomi"

command -v go >/dev/null || { echo "peers/build.sh: 'go' not found; install golang-go (ci/apt-packages.txt)" >&2; exit 1; }
[ -d "$govmomi_src/simulator" ] || { echo "peers/build.sh: $govmomi_src missing; install golang-github-vmware-govmomi-dev" >&2; exit 1; }

mkdir -p "$bin" "$root/target/peers/gocache"
# Test processes may call this script at the same time: one builds, the others wait for it.
exec 9>"$bin/.lock"
flock 9
export GOPATH="$gopath_pkgs" GO111MODULE=off GOCACHE="$root/target/peers/gocache" GOFLAGS= CGO_ENABLED=0

toolchain=$(go version; dpkg-query -W -f='${Version}' golang-github-vmware-govmomi-dev 2>/dev/null || true)
for tool in vcsim rpex; do
  src="peers/govmomi/$tool"
  want=$( { echo "$toolchain"; find "$src" -type f -name '*.go' -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -d' ' -f1)
  stamp="$bin/.$tool.sha256"
  if [ ! -x "$bin/$tool" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "peers/build.sh: building $tool" >&2
    go build -trimpath -o "$bin/$tool.tmp" "./$src"
    mv "$bin/$tool.tmp" "$bin/$tool"
    echo "$want" > "$stamp"
  fi
  echo "$bin/$tool"
done
