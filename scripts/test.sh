#!/usr/bin/env bash
# Installs what the tests need, skipping what is already there, then runs
# them: the README's test command, and what CI runs.
#
#   moto[server] 5.2.5   S3 API server for the S3 tests (pip, seconds)
#   tansu 0.6.0          Kafka broker with SQLite storage for the Kafka tests
#                        (cargo install, about 15 minutes on 2 cores, once)
#
# Each test that needs a server starts its own on a free port and stops it.
# Arguments are passed to `cargo test` (e.g. `-p exoflow-engine`).
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION=5.2.5
TANSU_VERSION=0.6.0

step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "moto ${MOTO_VERSION} (S3 API server for the S3 tests)"
if python3 -c "import importlib.metadata as m,sys; sys.exit(m.version('moto')!='${MOTO_VERSION}')" 2>/dev/null \
   && command -v moto_server >/dev/null; then
  echo "moto ${MOTO_VERSION} already installed"
else
  python3 -m pip install --quiet "moto[server]==${MOTO_VERSION}"
  # pyenv only sees a new console script after a rehash.
  if command -v pyenv >/dev/null; then pyenv rehash || true; fi
fi
command -v moto_server >/dev/null || { echo "moto_server is not on PATH after installing moto" >&2; exit 1; }

step "tansu ${TANSU_VERSION} with SQLite storage (Kafka broker for the Kafka tests)"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if command -v tansu >/dev/null && tansu --version 2>/dev/null | grep -q " ${TANSU_VERSION}\$"; then
  echo "tansu ${TANSU_VERSION} already installed"
else
  echo "building tansu (about 15 minutes on 2 cores, once)"
  cargo install tansu --version "${TANSU_VERSION}" --features libsql --locked --quiet
fi
command -v tansu >/dev/null || { echo "tansu is not on PATH after installing it" >&2; exit 1; }

step "tests (optimized, all features: failpoints for the crash tests)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --release --all-features "$@" 2>&1 | tee "$log"

# cargo prints one result line per test binary, the last often a crate
# without doc tests ("0 passed"): close with the totals of all of them.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "\nall test binaries: %d passed, %d failed, %d ignored\n", p, f, i }' "$log"
