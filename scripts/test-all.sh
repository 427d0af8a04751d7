#!/usr/bin/env bash
# Sets up a fresh machine and runs every check and test of mnemo:
#   Node >= 20 (must be there), pnpm (installed if missing), a Rust toolchain with the wasm32 target (Debian's
#   rustc/cargo/libstd-rust-dev-wasm32/lld installed with apt-get when none is found), the workspace's npm packages,
#   then build, lint, typecheck and the tests of every package. Prints "N passed, N failed, N skipped" at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

log "lint"
pnpm biome check .

log "typecheck"
pnpm turbo run typecheck

log "tests"
rm -f packages/*/.vitest-results.json apps/*/.vitest-results.json examples/*/.vitest-results.json
status=0
pnpm turbo run test --concurrency=1 -- --reporter=default --reporter=json --outputFile.json=.vitest-results.json || status=$?
node scripts/test-summary.mjs || status=1
exit $status
