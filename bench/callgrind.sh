#!/usr/bin/env bash
# Counts the instructions verifyd executes during one verifyd-bench run, with valgrind's
# callgrind: the same binary and workload give the same count whatever else the machine does,
# which the throughput figures of these shared machines do not (docs/benchmarks.md).
#
#   bench/callgrind.sh OUT [verifyd-bench run arguments...]
#
# writes OUT-01, OUT-02, … (one file per thread; callgrind_annotate reads them) and prints the
# total and the SQLite writer thread's count. VERIFYD_CALLGRIND_BIN names the verifyd to measure
# (default: target/release/verifyd). Needs valgrind (Debian: apt-get install valgrind).
set -euo pipefail

if [ "${1:-}" = serve ]; then
    # verifyd-bench calls this script in place of verifyd.
    valgrind --tool=callgrind --separate-threads=yes --dump-instr=no \
        --callgrind-out-file="$VERIFYD_CALLGRIND_OUT" \
        "$VERIFYD_CALLGRIND_BIN" "$@" 2>>"$VERIFYD_CALLGRIND_OUT.log" &
    echo $! >"$VERIFYD_CALLGRIND_OUT.pid"
    wait
    exit
fi

out=$(realpath -m "$1")
shift
root=$(cd "$(dirname "$0")/.." && pwd)
export VERIFYD_CALLGRIND_OUT=$out
export VERIFYD_CALLGRIND_BIN=${VERIFYD_CALLGRIND_BIN:-$root/target/release/verifyd}
rm -f "$out" "$out"-* "$out.pid" "$out.log"
"$root/target/release/verifyd-bench" run --verifyd "$root/bench/callgrind.sh" "$@"

# verifyd-bench ends its server with SIGKILL, which would lose the counts: the server keeps
# running under valgrind until it is asked to stop here.
pid=$(cat "$out.pid")
kill -TERM "$pid"
for _ in $(seq 1 120); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
done

count() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'; }
total=0
writer=0
for f in "$out"-*; do
    n=$(count "$f")
    total=$((total + n))
    # The thread that appends to the WAL (and the main thread, a little, at start): the largest.
    if [ "$(callgrind_annotate --auto=no "$f" 2>/dev/null | grep -c walIndexAppend)" -gt 0 ]; then
        writer=$((writer > n ? writer : n))
    fi
done
echo "instructions: total $total, SQLite writer thread $writer"
