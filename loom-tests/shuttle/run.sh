#!/usr/bin/env bash
# Randomized schedule tests of the real slot protocol under shuttle (see docs/testing.md).
# SLOTLOG_SHUTTLE_ITERS sets the schedules per test (default 1000); a failure prints the
# schedule, which SLOTLOG_SHUTTLE_REPLAY="<test name>=<schedule>" replays deterministically.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTFLAGS="--cfg slotlog_shuttle"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
start=$(date +%s)
cargo test --release --tests -- --test-threads 1 "$@"
echo "shuttle suite: $(( $(date +%s) - start )) s"
