#!/usr/bin/env bash
# Runs the bridge's end-to-end benchmarks (bench/bench_test.go) and prints one
# summary table (markdown) on standard output; the raw `go test -bench` output
# goes to standard error and to $OUT (default: a temporary file).
#
#   bench/run.sh                     everything (about 4 minutes on 2 cores)
#   BENCH='Throughput|Idle' bench/run.sh     a subset (a -bench pattern)
#   PROFILE=/tmp/prof bench/run.sh   also write CPU profiles: the bridge's own
#                                    (one per benchmark, from its child process)
#                                    and the fakes' (fakes.cpu.pprof)
set -euo pipefail
cd "$(dirname "$0")/.."

out=${OUT:-$(mktemp -t bridge-bench.XXXXXX)}
args=(-run '^$' -bench "${BENCH:-.}" -benchtime=1x -timeout 40m)
if [ -n "${PROFILE:-}" ]; then
  mkdir -p "$PROFILE"
  export BRIDGE_BENCH_PROFILE_DIR=$PROFILE
  args+=(-cpuprofile "$PROFILE/fakes.cpu.pprof" -o "$PROFILE/bench.test")
fi

# CPU ticks: the machine's busy and total from /proc/stat, ours from this
# shell's waited-for children (go test, the test binary, the bridge children).
machine_ticks() { awk '/^cpu /{busy=$2+$3+$4+$7+$8+$9; print busy, busy+$5+$6}' /proc/stat; }
our_ticks() { awk '{print $16+$17}' "/proc/$$/stat"; }
read -r busy0 total0 < <(machine_ticks)
ours0=$(our_ticks)

BRIDGE_BENCH=1 go test "${args[@]}" ./bench/ 2>&1 | tee "$out" >&2
status=${PIPESTATUS[0]}

read -r busy1 total1 < <(machine_ticks)
ours1=$(our_ticks)
others=$(awk -v b=$((busy1 - busy0)) -v t=$((total1 - total0)) -v o=$((ours1 - ours0)) \
  'BEGIN { if (t > 0) { p = (b - o) / t * 100; if (p < 0) p = 0; printf "%.0f%%", p } }')

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
machine="$(nproc) cores, ${cpu:-unknown CPU}, $(free -g | awk '/^Mem:/{print $2}') GiB, $(go version | awk '{print $3, $4}'), SQLite store (modernc.org/sqlite)"
go run ./bench/summary -machine "$machine" -others "$others" < "$out"
if [ "$status" -ne 0 ]; then
  echo "benchmarks failed (exit $status); raw output in $out" >&2
fi
exit "$status"
