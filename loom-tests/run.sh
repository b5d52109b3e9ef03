#!/usr/bin/env bash
# Runs the loom models of the slot protocol with the bounds CI uses (each model states its
# preemption bound in tests/models.rs; LOOM_MAX_PREEMPTIONS overrides all of them).
# Release build with debug assertions (see Cargo.toml), its own target dir, one model at a time.
# Prints one line per model: bound, executions explored, seconds.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTFLAGS="--cfg slotlog_loom"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# These would make loom stop early, so the models would not be exhaustive.
unset LOOM_MAX_PERMUTATIONS LOOM_MAX_DURATION LOOM_CHECKPOINT_FILE
export RUST_BACKTRACE="${RUST_BACKTRACE:-0}"
start=$(date +%s)
cargo test --release --tests --no-run
cargo test --release --tests -- --test-threads 1 --nocapture "$@"
echo "loom suite: $(( $(date +%s) - start )) s"
