#!/usr/bin/env bash
# Sets up a fresh machine (like test-all.sh, without the tests) and runs the prompt-cache demo offline on a small
# deterministic synthetic Llama it generates itself. Pass --model DIR_OR_REPO to use a real checkpoint instead.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
log "demo"
node tools/demo/demo.mjs "$@"
