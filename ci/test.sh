#!/usr/bin/env bash
# The SDK's one test command. Installs what the tests need when it is missing, then runs every
# check CI runs: formatting, clippy, the tests (nextest + doc tests), rustdoc, freshness checks.
#
# Usage: ./ci/test.sh            (run from anywhere; needs root for apt-get on a fresh machine)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# One-shot builds: incremental caches only cost time and many GB of disk here.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() { printf '\n==> %s\n' "$*"; }

# ---------------------------------------------------------------------------------------------
# 1. Install what the tests need, only when it is missing.
#    Debian packages: ci/apt-packages.txt; PyPI packages (pinned): ci/requirements.txt, into a
#    virtualenv under target/ so the system Python is never touched.
# ---------------------------------------------------------------------------------------------
mapfile -t apt_wanted < <(grep -Ev '^\s*(#|$)' ci/apt-packages.txt || true)
apt_missing=()
for p in "${apt_wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || apt_missing+=("$p")
done
if [ ${#apt_missing[@]} -gt 0 ]; then
  apt_extra=()
  if printf '%s\n' "${apt_missing[@]}" | grep -qx qemu-system-x86; then
    # The base image may carry a backports qemu-utils that conflicts with bookworm's
    # qemu-system-x86 (apt would then remove qemu-img): take both from bookworm, in one command.
    apt_missing+=("qemu-utils/bookworm")
    apt_extra+=(--allow-downgrades)
  fi
  step "apt-get install ${apt_missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    "${apt_extra[@]}" "${apt_missing[@]}"
fi

venv="$root/target/py-venv"
if grep -Eqv '^\s*(#|$)' ci/requirements.txt 2>/dev/null; then
  stamp="$venv/.requirements.sha256"
  want=$(sha256sum ci/requirements.txt | cut -d' ' -f1)
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    step "pip install -r ci/requirements.txt (into target/py-venv)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r ci/requirements.txt
    echo "$want" > "$stamp"
  fi
  # Tests that drive real Python peers (pyVmomi) find the interpreter here.
  export SDK_TEST_PYTHON="$venv/bin/python"
fi

# The Go interop peers (govmomi's vcsim and client), built once here so that the many test
# processes that start vcsim do not each build it; they find it through GOVMOMI_VCSIM.
step "peers/build.sh (govmomi vcsim, cached in target/peers)"
peers=$(peers/build.sh)
export GOVMOMI_VCSIM="${peers%%$'\n'*}"

# ---------------------------------------------------------------------------------------------
# 2. The checks.
# ---------------------------------------------------------------------------------------------
step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets --all-features -- -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --no-fail-fast
  cargo test --workspace --all-features --doc
else
  cargo test --workspace --all-features --no-fail-fast
fi

step "rustdoc (warnings are errors)"
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --all-features --no-deps

step "freshness and layering checks"
cargo xtask codegen --check
cargo xtask ffi-header --check
cargo xtask layering

step "all checks passed"
