#!/usr/bin/env bash
# Sourced by test-all.sh and demo.sh: makes a fresh machine ready and builds the workspace.
#   Node >= 20 (must be there), pnpm (installed if missing), a Rust toolchain with the wasm32 target (Debian's
#   rustc/cargo/libstd-rust-dev-wasm32/lld installed with apt-get when none is found), redis-server (for the server's
#   tests; Debian's package), a C compiler, make and python3 for the native backend (node-gyp; Node's headers come with
#   Node), on x86-64 Debian's aarch64 cross compiler and qemu-user for the arm64 kernel tests, the npm packages, the
#   build.
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1 CI="${CI:-true}"
PNPM_VERSION=12.4.2

log() { printf '\n== %s\n' "$*"; }

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "mnemo needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

if [ "$(pnpm --version 2>/dev/null || true)" != "$PNPM_VERSION" ]; then
  log "installing pnpm $PNPM_VERSION"
  npm install -g "pnpm@$PNPM_VERSION" >/dev/null
fi

has_wasm_target() { # $1 = rustc
  local dir
  dir=$("$1" --print target-libdir --target wasm32-unknown-unknown 2>/dev/null) || return 1
  ls "$dir"/libcore-*.rlib >/dev/null 2>&1
}
if ! { command -v rustc >/dev/null && has_wasm_target rustc; } && ! { [ -x /usr/bin/rustc ] && has_wasm_target /usr/bin/rustc; }; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    log "installing Debian's Rust toolchain with the wasm32 target"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rustc cargo libstd-rust-dev-wasm32 lld >/dev/null
  else
    echo "No Rust toolchain with the wasm32-unknown-unknown target was found." >&2
    echo "Install one: 'rustup target add wasm32-unknown-unknown', or on Debian/Ubuntu (as root):" >&2
    echo "  apt-get install -y rustc cargo libstd-rust-dev-wasm32 lld" >&2
    exit 1
  fi
fi

# redis-server (Debian's package) for the tests of `mnemo serve` with a Redis tier shared by replicas; the tests start
# their own server on a free loopback port, so none needs to be running.
if ! command -v redis-server >/dev/null && [ ! -x /usr/bin/redis-server ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    log "installing Debian's redis-server"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis-server was not found: the Redis tests of 'mnemo serve' need it (they fail under CI=true, skip otherwise)." >&2
    echo "Install it (Debian/Ubuntu, as root): apt-get install -y redis-server" >&2
  fi
fi

native_tools=()
command -v cc >/dev/null || native_tools+=(gcc)
command -v make >/dev/null || native_tools+=(make)
command -v python3 >/dev/null || native_tools+=(python3)
if [ "$(uname -m)" = x86_64 ]; then
  command -v aarch64-linux-gnu-gcc >/dev/null || native_tools+=(gcc-aarch64-linux-gnu)
  command -v qemu-aarch64 >/dev/null || native_tools+=(qemu-user)
fi
if [ ${#native_tools[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    log "installing ${native_tools[*]} (native backend build, arm64 kernel tests)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${native_tools[@]}" >/dev/null
  else
    echo "warning: ${native_tools[*]} not found: the native backend may not build (mnemo then runs on WASM)," >&2
    echo "  and the arm64 kernel tests need gcc-aarch64-linux-gnu and qemu-user" >&2
  fi
fi

log "installing npm packages"
pnpm install --frozen-lockfile

log "building"
pnpm turbo run build

