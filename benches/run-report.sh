#!/usr/bin/env bash
# Runs the benchmark report (slotlog vs baselines vs crates.io WALs, calibrators, latency, CPU,
# the MuopDB scenario) and writes docs/performance.md and docs/img/*.png.
#
#   benches/run-report.sh                        # short sweep, a few minutes
#   SLOTLOG_REPORT_FULL=1 benches/run-report.sh  # full sweep: threads 1..128, 5 repeats, 1 s points
#
# Knobs: SLOTLOG_REPORT_THREADS=1,2,8,32,64  SLOTLOG_REPORT_REPEATS=3  SLOTLOG_REPORT_POINT_MS=300
#        SLOTLOG_REPORT_POINT_MB=512  SLOTLOG_BENCH_DIR=<scratch dir on a real disk, not tmpfs>
#        SLOTLOG_REPORT_OUT=<dir for performance.md and img/, default docs>
# The report crate (benches/peers) has its own workspace and lock file, so building it never
# touches slotlog's own build or CI.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo/benches/peers"
echo "building the report runner (first build compiles raft-engine, okaywal, wal-db, plotters)..." >&2
cargo build --release --bin report
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
cd "$repo"
exec "$target_dir/release/report" "$@"
