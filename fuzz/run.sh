#!/usr/bin/env bash
# Fuzz each target in turn until it has used SECONDS of CPU time (default 600), on one core.
#   fuzz/run.sh [SECONDS] [TARGET...]        e.g. fuzz/run.sh 600 config loopback
# Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain RUSTC_BOOTSTRAP=1 lets it use the nightly
# flags it needs. Targets are built with debug assertions (-a), so an integer overflow is a crash too.
# A target that crashes stops; its input is in artifacts/<target>/ (see README.md for what to do with it).
# Appends one line per round to results.txt: CPU seconds (user+sys of the fuzzer), executions, crash or not.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
budget=${1:-600}; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(config loopback discovery claims store_entry times)
export RUSTC_BOOTSTRAP=${RUSTC_BOOTSTRAP:-1}
cargo fuzz build -a >/dev/null || exit 1
mkdir -p logs
for t in "${targets[@]}"; do
  case $t in config) dict=dict/toml.dict ;; loopback) dict=dict/http.dict ;; times) dict=dict/date.dict ;; *) dict=dict/json.dict ;; esac
  mkdir -p "corpus/$t" "artifacts/$t"
  used=0; execs=0; round=0
  # The machine may be shared: wall time is not CPU time, so run rounds until the CPU budget is spent.
  while [ "$used" -lt "$budget" ]; do
    round=$((round + 1))
    TIMEFORMAT='%U %S'
    { time cargo fuzz run -a "$t" "corpus/$t" "seeds/$t" -- -jobs=1 -dict="$dict" -print_final_stats=1 \
        -max_total_time=$((budget - used)) >"logs/$t.$round.log" 2>&1 ; } 2>"logs/$t.$round.time"
    used=$((used + $(awk '{printf "%d", $1 + $2}' "logs/$t.$round.time")))
    n=$(grep -h 'stat::number_of_executed_units' fuzz-0.log 2>/dev/null | tail -1 | awk '{print $2}')
    execs=$((execs + ${n:-0}))
    crashed=$(grep -c 'SUMMARY: libFuzzer' fuzz-0.log 2>/dev/null)
    cp fuzz-0.log "logs/$t.$round.fuzz-0.log" 2>/dev/null
    echo "$(date +%FT%T) $t round=$round cpu_s=$used execs=$execs crash=$crashed" | tee -a results.txt
    if [ "$crashed" != 0 ]; then
      grep -h -A2 'panicked at' fuzz-0.log | head -3
      echo "artifact: artifacts/$t/$(ls -t "artifacts/$t" | head -1)"
      break
    fi
  done
done
