#!/usr/bin/env bash
# run_flagship.sh: run a large model (the CodeLlama-34B-shaped random-weight
# GGUF of scripts/make_shaped_gguf.py) and report each process's resident
# memory (peak VmHWM, largest and last VmRSS, sampled from /proc/PID/status
# while it runs), the load time and tokens/s. Not part of CI.
#
#   bash scripts/run_flagship.sh [options] MODEL
#
# Modes:
#   pipeline  2 MPI ranks: layerskipd (rank 0: embedding, layers [0, E), head)
#             and layerskip-worker (rank 1: layers [E, L), head), on a unix
#             socket; `layerskip generate` autoregressive, then
#             self_speculative (--exit-layer E --num-speculations K); then
#             SIGTERM to rank 0 (drains, stops the worker, mpirun exits 0).
#   single    layerskip-bench in one process (the whole model resident),
#             autoregressive then self_speculative.
#   auto      pipeline if BUILD/daemon/layerskipd takes --stages and links
#             MPI and BUILD/worker/layerskip-worker exists, else single
#             (default).
#
# Options:
#   --build DIR          build directory (default build)
#   --mode M             auto | pipeline | single (default auto)
#   --stages LIST        pipeline stages (default 0-8,8-48)
#   --threads N          threads per rank (pipeline; default 1)
#   --bench-threads N    threads of the single process (default 2)
#   --ctx N              context (default 256)
#   --steps N            tokens to generate (default 8)
#   --prompt TEXT        (default "def fib(n):")
#   --exit-layer E       self_speculative exit layer (default 8)
#   --num-speculations K (default 3)
#   --draft-min-p P      daemon/bench draft cut-off (default 0: always draft k;
#                        the random weights never reach the usual 0.95, so any
#                        cut-off > 0 would draft nothing)
#   --cold               evict MODEL's pages from the page cache first
#                        (posix_fadvise DONTNEED on this file only)
#   --load-timeout S     seconds to wait for the daemon to serve (default 1200)
#   --out DIR            logs and summary.json (default /tmp/flagship.PID)
set -euo pipefail

BUILD=build MODE=auto STAGES=0-8,8-48 THREADS=1 BENCH_THREADS=2 CTX=256 STEPS=8
PROMPT="def fib(n):" EXIT_LAYER=8 NSPEC=3 MINP=0 COLD=0 LOAD_TIMEOUT=1200 OUT=""
MODEL=""
die() { echo "run_flagship: error: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
need() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
    case "$1" in
    --build) need "$@"; BUILD=$2; shift 2 ;;
    --mode) need "$@"; MODE=$2; shift 2 ;;
    --stages) need "$@"; STAGES=$2; shift 2 ;;
    --threads) need "$@"; THREADS=$2; shift 2 ;;
    --bench-threads) need "$@"; BENCH_THREADS=$2; shift 2 ;;
    --ctx) need "$@"; CTX=$2; shift 2 ;;
    --steps) need "$@"; STEPS=$2; shift 2 ;;
    --prompt) need "$@"; PROMPT=$2; shift 2 ;;
    --exit-layer) need "$@"; EXIT_LAYER=$2; shift 2 ;;
    --num-speculations) need "$@"; NSPEC=$2; shift 2 ;;
    --draft-min-p) need "$@"; MINP=$2; shift 2 ;;
    --cold) COLD=1; shift ;;
    --load-timeout) need "$@"; LOAD_TIMEOUT=$2; shift 2 ;;
    --out) need "$@"; OUT=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [[ -z "$MODEL" ]] || die "one MODEL only (got '$MODEL' and '$1')"; MODEL=$1; shift ;;
    esac
done
[[ -n "$MODEL" ]] || { echo "run_flagship: error: MODEL is missing" >&2; usage 2; }
[[ -r "$MODEL" ]] || die "cannot read $MODEL"
case "$MODE" in auto|pipeline|single) ;; *) die "--mode must be auto, pipeline or single, got '$MODE'" ;; esac
OUT=${OUT:-/tmp/flagship.$$}
mkdir -p "$OUT"
rm -f "$OUT"/rss*.log "$OUT"/gen_*.json "$OUT"/bench_*.json "$OUT/summary.json"

DAEMON=$BUILD/daemon/layerskipd WORKER=$BUILD/worker/layerskip-worker
CLIENT=$BUILD/client/layerskip BENCH=$BUILD/engine/layerskip-bench
# the daemon is a pipeline rank only when it takes --stages and links MPI
# (captured first: grep -q in a pipe would SIGPIPE the writer and fail under pipefail)
wired() {
    local help libs
    help=$("$DAEMON" --help 2>&1 || true); libs=$(ldd "$DAEMON" 2>/dev/null || true)
    [[ $help == *--stages* && $libs == *libmpi* ]]
}
if [[ $MODE == auto ]]; then
    if [[ -x $DAEMON && -x $WORKER && -x $CLIENT ]] && wired; then
        MODE=pipeline
    else
        MODE=single
        echo "run_flagship: $DAEMON is not a pipeline daemon (no --stages or no MPI) or a binary is missing: single process"
    fi
fi
if [[ $MODE == pipeline ]]; then
    for b in "$DAEMON" "$WORKER" "$CLIENT"; do [[ -x $b ]] || die "$b is missing (build it in $BUILD)"; done
    wired || die "$DAEMON has no --stages option or does not link MPI: the pipeline is not wired into the daemon in this build"
    command -v mpirun >/dev/null || die "mpirun is not installed"
else
    [[ -x $BENCH ]] || die "$BENCH is missing (cmake --build $BUILD --target layerskip-bench)"
fi

size=$(stat -c %s "$MODEL")
echo "run_flagship: $MODEL ($(awk -v s="$size" 'BEGIN{printf "%.2f GB", s/1e9}')), mode $MODE, logs in $OUT"
echo "run_flagship: $(free -m | awk '/^Mem:/{printf "memory: %d MB total, %d MB available", $2, $7}')"
if [[ $COLD == 1 ]]; then
    python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' "$MODEL"
    echo "run_flagship: evicted $MODEL from the page cache"
fi

now() { date +%s.%N; }
# sample_rss LOG PID NAME [PID NAME ...]: "t pid name VmRSS_kB VmHWM_kB cpu_ticks" every 0.25 s
# while any lives (cpu_ticks: utime + stime of /proc/PID/stat)
sample_rss() {
    local log=$1; shift
    local -a ps=("$@")
    while :; do
        local alive=0 i t
        t=$(now)
        for ((i = 0; i < ${#ps[@]}; i += 2)); do
            local st=/proc/${ps[i]}/status
            [[ -r $st ]] || continue
            local rss hwm
            rss=$(awk '/^VmRSS:/{print $2}' "$st" 2>/dev/null) || continue
            hwm=$(awk '/^VmHWM:/{print $2}' "$st" 2>/dev/null) || continue
            [[ -n $rss ]] || continue
            local cpu
            cpu=$(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/${ps[i]}/stat" 2>/dev/null) || cpu=0
            alive=1
            echo "$t ${ps[i]} ${ps[i+1]} $rss $hwm ${cpu:-0}"
        done >>"$log"
        [[ $alive == 1 ]] || break
        sleep 0.25
    done
}
# rss_now PID: "VmRSS_kB VmHWM_kB"
rss_now() { awk '/^VmRSS:/{r=$2} /^VmHWM:/{h=$2} END{print r+0, h+0}' "/proc/$1/status" 2>/dev/null || echo "0 0"; }
# rss_summary LOG: one line per process from the samples
rss_summary() {
    local hz; hz=$(getconf CLK_TCK)
    awk -v hz="$hz" '{ n[$2]=$3; if ($4>mx[$2]) mx[$2]=$4; last[$2]=$4; if ($5>h[$2]) h[$2]=$5; c[$2]++;
           if (!($2 in t0)) t0[$2]=$1; t1[$2]=$1; cpu[$2]=$6 }
         END { for (p in n) printf "  %-16s pid %-7s peak VmHWM %7.0f MB, max VmRSS %7.0f MB, last VmRSS %7.0f MB, CPU %.0f s in %.0f s (%d samples)\n",
                                     n[p], p, h[p]/1024, mx[p]/1024, last[p]/1024, cpu[p]/hz, t1[p]-t0[p], c[p] }' "$1"
}

SUMMARY=$OUT/summary.json
# ------------------------------------------------------------------ single process
if [[ $MODE == single ]]; then
    echo "[]" >"$SUMMARY"
    for strat in autoregressive self_speculative; do
        args=(-m "$MODEL" -p "$PROMPT" -n "$STEPS" -t "$BENCH_THREADS" -c "$CTX" --ignore-eos --json
              --generation-strategy "$strat")
        [[ $strat == self_speculative ]] && args+=(--exit-layer "$EXIT_LAYER" --num-speculations "$NSPEC" --draft-min-p "$MINP")
        echo "run_flagship: $BENCH ${args[*]}"
        t0=$(now)
        "$BENCH" "${args[@]}" >"$OUT/bench_$strat.json" 2>"$OUT/bench_$strat.err" &
        bp=$!
        sample_rss "$OUT/rss_$strat.log" "$bp" layerskip-bench &
        sp=$!
        rc=0; wait "$bp" || rc=$?
        wait "$sp" || true
        t1=$(now)
        [[ $rc == 0 ]] || { cat "$OUT/bench_$strat.err" >&2; die "layerskip-bench failed (exit $rc)"; }
        python3 - "$OUT/bench_$strat.json" "$SUMMARY" "$strat" "$t0" "$t1" "$OUT/rss_$strat.log" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
summ = json.load(open(sys.argv[2]))
rss = [l.split() for l in open(sys.argv[6]) if l.strip()]
peak_rss = max((int(x[3]) for x in rss), default=0) / 1024
hwm = max((int(x[4]) for x in rss), default=0) / 1024
row = {"mode": "single", "strategy": sys.argv[3], "wall_s": float(sys.argv[5]) - float(sys.argv[4]),
       "load_ms": r["load_ms"], "prefill_ms": r["prefill_ms"], "decode_tok_s": r["decode_tok_s"],
       "time_per_token_ms": r["time_per_token_ms"], "generated_tokens": r["generated_tokens"],
       "drafted": r["drafted"], "accepted": r["accepted"], "acceptance_rate": r["acceptance_rate"],
       "peak_rss_mb_bench": r["peak_rss_mb"], "sampled_max_vmrss_mb": peak_rss, "sampled_vmhwm_mb": hwm,
       "token_ids": r["token_ids"]}
summ.append(row)
json.dump(summ, open(sys.argv[2], "w"), indent=1)
print(f"  {row['strategy']}: load {row['load_ms']/1000:.1f} s, prefill {row['prefill_ms']:.0f} ms, "
      f"decode {row['decode_tok_s']:.3f} tok/s ({row['time_per_token_ms']:.0f} ms/token), "
      f"{row['generated_tokens']} tokens, drafted {row['drafted']} accepted {row['accepted']}, "
      f"peak RSS {row['peak_rss_mb_bench']:.0f} MB (sampled VmHWM {hwm:.0f} MB), wall {row['wall_s']:.1f} s")
EOF
    done
    echo "run_flagship: summary in $SUMMARY"
    exit 0
fi

# ------------------------------------------------------------------ 2-rank pipeline
SOCK=/tmp/layerskip-flagship.$$.sock
rm -f "$SOCK"
MPI_PID=""
cleanup() {
    if [[ -n $MPI_PID ]] && kill -0 "$MPI_PID" 2>/dev/null; then
        kill -TERM "$MPI_PID" 2>/dev/null || true
    fi
    rm -f "$SOCK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

dcmd=(mpirun --allow-run-as-root --oversubscribe --bind-to none
      -np 1 "$DAEMON" --model "$MODEL" --listen "unix:$SOCK" --stages "$STAGES" --threads "$THREADS"
      --ctx "$CTX" --max-sessions 1 --stage-timeout 120 --draft-min-p "$MINP"
      : -np 1 "$WORKER")
echo "run_flagship: ${dcmd[*]}"
t0=$(now)
"${dcmd[@]}" >"$OUT/mpirun.log" 2>&1 &
MPI_PID=$!

# the ranks: descendants of mpirun named layerskipd / layerskip-worker
find_rank() {  # find_rank NAME -> pid
    local want=$1 frontier=("$MPI_PID") next p c
    while [[ ${#frontier[@]} -gt 0 ]]; do
        next=()
        for p in "${frontier[@]}"; do
            for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do
                if [[ $(readlink "/proc/$c/exe" 2>/dev/null) == */"$want" ]]; then echo "$c"; return 0; fi
                next+=("$c")
            done
        done
        frontier=("${next[@]+"${next[@]}"}")
    done
    return 1
}
R0="" R1=""
for _ in $(seq 1 200); do
    kill -0 "$MPI_PID" 2>/dev/null || { cat "$OUT/mpirun.log" >&2; die "mpirun exited before the ranks started"; }
    R0=$(find_rank layerskipd || true); R1=$(find_rank layerskip-worker || true)
    [[ -n $R0 && -n $R1 ]] && break
    sleep 0.1
done
[[ -n $R0 && -n $R1 ]] || die "did not find the two ranks under mpirun (pid $MPI_PID)"
echo "run_flagship: rank 0 layerskipd pid $R0, rank 1 layerskip-worker pid $R1"
sample_rss "$OUT/rss.log" "$R0" rank0-layerskipd "$R1" rank1-worker &
SAMPLER=$!

served=0
while :; do
    kill -0 "$MPI_PID" 2>/dev/null || { cat "$OUT/mpirun.log" >&2; die "mpirun exited while loading (log above)"; }
    if [[ -S $SOCK ]] && "$CLIENT" health --server "unix:$SOCK" >/dev/null 2>&1; then served=1; break; fi
    awk -v a="$(now)" -v b="$t0" -v l="$LOAD_TIMEOUT" 'BEGIN{exit !(a-b > l)}' && break
    sleep 0.5
done
[[ $served == 1 ]] || die "the daemon did not serve within $LOAD_TIMEOUT s (log: $OUT/mpirun.log)"
t_load=$(awk -v a="$(now)" -v b="$t0" 'BEGIN{printf "%.1f", a-b}')
read -r r0_rss r0_hwm <<<"$(rss_now "$R0")"; read -r r1_rss r1_hwm <<<"$(rss_now "$R1")"
echo "run_flagship: serving after $t_load s; RSS rank 0 $((r0_rss / 1024)) MB, rank 1 $((r1_rss / 1024)) MB"
echo "{\"mode\": \"pipeline\", \"load_s\": $t_load, \"after_load\": {\"rank0_vmrss_kb\": $r0_rss, \"rank1_vmrss_kb\": $r1_rss}, \"runs\": []}" >"$SUMMARY"

for strat in autoregressive self_speculative; do
    gargs=(generate --server "unix:$SOCK" --max-steps "$STEPS" --strategy "$strat" --ignore-eos --json)
    [[ $strat == self_speculative ]] && gargs+=(--exit-layer "$EXIT_LAYER" --num-speculations "$NSPEC")
    gargs+=(-- "$PROMPT")
    echo "run_flagship: $CLIENT ${gargs[*]}"
    c0=$(now)
    rc=0; "$CLIENT" "${gargs[@]}" >"$OUT/gen_$strat.json" 2>"$OUT/gen_$strat.err" || rc=$?
    c1=$(now)
    [[ $rc == 0 ]] || { cat "$OUT/gen_$strat.err" >&2; die "layerskip generate ($strat) failed (exit $rc)"; }
    read -r r0_rss r0_hwm <<<"$(rss_now "$R0")"; read -r r1_rss r1_hwm <<<"$(rss_now "$R1")"
    python3 - "$OUT/gen_$strat.json" "$SUMMARY" "$strat" "$c0" "$c1" "$r0_rss" "$r0_hwm" "$r1_rss" "$r1_hwm" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
s = r.get("stats", {})
summ = json.load(open(sys.argv[2]))
kb = [int(x) for x in sys.argv[6:10]]
row = {"strategy": sys.argv[3], "client_wall_s": float(sys.argv[5]) - float(sys.argv[4]),
       "tokens_per_second": s.get("tokens_per_second"), "generated_tokens": s.get("generated_tokens"),
       "time_to_first_token_ms": s.get("time_to_first_token_ms"), "total_ms": s.get("total_ms"),
       "drafted": s.get("drafted"), "accepted": s.get("accepted"), "acceptance_rate": s.get("acceptance_rate"),
       "token_ids": r.get("token_ids"),
       "rank0_vmrss_mb": kb[0] / 1024, "rank0_vmhwm_mb": kb[1] / 1024,
       "rank1_vmrss_mb": kb[2] / 1024, "rank1_vmhwm_mb": kb[3] / 1024}
summ["runs"].append(row)
json.dump(summ, open(sys.argv[2], "w"), indent=1)
print(f"  {row['strategy']}: {row['tokens_per_second']:.3f} tok/s ({row['generated_tokens']} tokens, "
      f"first token {row['time_to_first_token_ms']:.0f} ms, total {row['total_ms']:.0f} ms), "
      f"drafted {row['drafted']} accepted {row['accepted']}; RSS after: rank 0 {row['rank0_vmrss_mb']:.0f} MB "
      f"(peak {row['rank0_vmhwm_mb']:.0f}), rank 1 {row['rank1_vmrss_mb']:.0f} MB (peak {row['rank1_vmhwm_mb']:.0f})")
EOF
done

# the clean stop (as scripts/setup.sh): SIGTERM to rank 0, which drains, stops
# the worker and lets mpirun exit 0 (SIGTERM to mpirun itself makes it exit 1)
kill -TERM "$R0"
stopped=0
for _ in $(seq 1 120); do kill -0 "$MPI_PID" 2>/dev/null || { stopped=1; break; }; sleep 0.5; done
mrc=0; [[ $stopped == 1 ]] && { wait "$MPI_PID" || mrc=$?; }
wait "$SAMPLER" 2>/dev/null || true
[[ $stopped == 1 ]] || echo "run_flagship: warning: mpirun (pid $MPI_PID) still running 60 s after SIGTERM" >&2
MPI_PID=""
echo "run_flagship: mpirun exited with $mrc after SIGTERM to rank 0; memory over the whole run (sampled every 0.25 s):"
rss_summary "$OUT/rss.log"
echo "run_flagship: summary in $SUMMARY, logs in $OUT"
