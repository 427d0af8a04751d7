#!/usr/bin/env bash
# Sets up a fresh machine and runs every check and test of mnemo:
#   Node >= 20 (must be there), pnpm (installed if missing), a Rust toolchain with the wasm32 target (Debian's
#   rustc/cargo/libstd-rust-dev-wasm32/lld installed with apt-get when none is found), the workspace's npm packages,
#   then build, lint, typecheck and the tests of every package. Prints "N passed, N failed, N skipped" at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

# A failing step does not stop the later ones: the run reports everything that is wrong at once, and fails at the end.
status=0
failed_steps=""

log "lint"
pnpm biome check . || failed_steps="$failed_steps lint"

log "typecheck"
pnpm turbo run typecheck --continue || failed_steps="$failed_steps typecheck"

log "tests"
# Every package's tests run even after one fails (--continue); the summary then lists each package and ends with
# "N passed, N failed, N skipped", counting a package whose tests crashed or wrote no report as failed.
rm -f packages/*/.vitest-results.json apps/*/.vitest-results.json tools/*/.vitest-results.json \
  examples/*/.vitest-results.json
rm -rf .turbo/runs
pnpm turbo run test --concurrency=1 --continue --summarize -- \
  --reporter=default --reporter=json --outputFile.json=.vitest-results.json || status=$?
summary=$(ls -t .turbo/runs/*.json 2>/dev/null | head -n 1 || true)
if [ -n "$failed_steps" ]; then
  status=1
  echo "FAILED before the tests:$failed_steps (see above)"
fi
node scripts/test-summary.mjs "$summary" || status=1
exit $status
