#!/usr/bin/env bash
# make_adapter.sh: the committed draft adapter, end to end (adapters/README.md):
# corpus -> engine/dump-states -> frequency table -> training -> evaluation -> GGUF,
# then the chat stage (7): chat prompts -> the model's own greedy answers ->
# dump-states --tokens-file -> fine-tuning on 70 % chat / 30 % raw steps -> GGUF.
#
#   tools/train/make_adapter.sh            # everything, work files in build/adapter-work
#   WORK=/tmp/aw STEPS=200 tools/train/make_adapter.sh   # a quicker, weaker run
#
# Settings (environment): MODEL, BUILD (configured CMake build folder), WORK,
# E, FFN, INIT, N (draft vocab trained for), STEPS, TIME_BUDGET (minutes; 0 = steps
# only, reproducible), BATCH, LR, THREADS, CONT_BUDGET (total minutes after the
# continuation at a constant CONT_LR; 0 = no continuation), CONT_THREADS,
# OUT (the adapter GGUF); chat stage: CHAT (0 = stop after the raw-text stage,
# whose GGUF then is OUT), CHAT_TRAIN (training prompts answered), CHAT_BUDGET
# (minutes), CHAT_LR, CHAT_BATCH. A finished step is skipped when its output exists;
# training resumes from WORK/run/ckpt.pt.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
PY=${PY:-$ROOT/.venv-train/bin/python}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
BUILD=${BUILD:-build}
WORK=${WORK:-build/adapter-work}
E=${E:-8}
FFN=${FFN:-1536}
INIT=${INIT:-layer:29}
N=${N:-8192}
STEPS=${STEPS:-1200}
TIME_BUDGET=${TIME_BUDGET:-28}
BATCH=${BATCH:-8}
LR=${LR:-1.5e-3}
THREADS=${THREADS:-2}
CONT_BUDGET=${CONT_BUDGET:-46}
CONT_LR=${CONT_LR:-1.5e-4}
CONT_THREADS=${CONT_THREADS:-1}
OUT=${OUT:-adapters/smollm2-135m-instruct.E$E.gguf}
EXITS=${EXITS:-4,6,8}

cmake --build "$BUILD" --target dump-states
DUMP="$BUILD/engine/dump-states"
mkdir -p "$WORK"

# 1. corpus (deterministic selection; manifest.tsv lists every source file)
[ -f "$WORK/corpus/train.list" ] || "$PY" tools/train/adapter_data.py --out "$WORK/corpus"
# the training documents in two interleaved halves (dumped one after the other)
awk 'NR%2==1' "$WORK/corpus/train.list" > "$WORK/corpus/trainA.list"
awk 'NR%2==0' "$WORK/corpus/train.list" > "$WORK/corpus/trainB.list"

# 2. layer-E states and the full model's top-32 logits, T = 256; of the second
#    half only its first 300 sequences (the committed run's time limit)
for part in heldout trainA trainB; do
  [ -f "$WORK/$part.bin" ] && continue
  max=(); [ "$part" = trainB ] && max=(--max-seq "${MAXSEQ_B:-300}")
  "$DUMP" --model "$MODEL" --list "$WORK/corpus/$part.list" --out "$WORK/$part.bin.tmp" \
          --exits "$EXITS" --seq-len 256 --topk 32 --threads "$THREADS" "${max[@]}"
  mv "$WORK/$part.bin.tmp" "$WORK/$part.bin"
done
TRAIN=("$WORK/trainA.bin" "$WORK/trainB.bin")

# 3. frequency table (draft vocab ranking) and its held-out coverage
"$PY" tools/train/adapter.py freq --model "$MODEL" --train "${TRAIN[@]}" --heldout "$WORK/heldout.bin" \
      --out "$WORK/table.npy" --json "$WORK/coverage.json"

# 4. training (resumable)
"$PY" tools/train/adapter.py train --model "$MODEL" --train "${TRAIN[@]}" --heldout "$WORK/heldout.bin" \
      --table "$WORK/table.npy" --out "$WORK/run" --exit "$E" --ffn-dim "$FFN" --init "$INIT" --warmup 30 \
      --eval-every 150 --heldout-seqs 24 --draft-vocab "$N" --steps "$STEPS" --time-budget "$TIME_BUDGET" --batch "$BATCH" --lr "$LR" --threads "$THREADS" --resume

# 4b. continuation (the committed file): the same run resumed at a constant lr
#     CONT_LR (the first stage's final lr) until CONT_BUDGET minutes of training
#     in all (28 + 18 = 46); --steps is only an upper bound here
if [ "$CONT_BUDGET" != 0 ]; then
  "$PY" tools/train/adapter.py train --model "$MODEL" --train "${TRAIN[@]}" --heldout "$WORK/heldout.bin" \
        --table "$WORK/table.npy" --out "$WORK/run" --exit "$E" --ffn-dim "$FFN" --init "$INIT" --warmup 30 \
        --eval-every 100000 --heldout-seqs 24 --draft-vocab "$N" --steps 100000 --time-budget "$CONT_BUDGET" \
        --batch "$BATCH" --lr "$CONT_LR" --min-lr-frac 1.0 --threads "$CONT_THREADS" --resume
fi

# 5. held-out agreement: plain early exit at every dumped E, and the adapter
"$PY" tools/train/adapter.py eval --model "$MODEL" --heldout "$WORK/heldout.bin" --table "$WORK/table.npy" \
      --ckpt "$WORK/run/ckpt.pt" --draft-vocab "$N" 4096 16384 --threads "$THREADS" --json "$WORK/eval.json"

# 6. the sidecar GGUF of the raw-text stage
mkdir -p "$(dirname "$OUT")"
RAW_OUT=$OUT; [ "${CHAT:-1}" = 1 ] && RAW_OUT=$WORK/raw.gguf
"$PY" tools/train/adapter.py export --model "$MODEL" --table "$WORK/table.npy" --ckpt "$WORK/run/ckpt.pt" --dtype f16 --out "$RAW_OUT"
[ "${CHAT:-1}" = 1 ] || exit 0

# 7. chat stage (self-distillation in the chat register): prompts built from the
#    same Debian files, the model's own greedy answers (engine, stop at EOS, at
#    most 192 new tokens, 1 thread), one sequence per answer (prompt + answer,
#    <= 512 tokens, not packed), layer-E states + teacher top-32 at T = 512
C=$WORK/chat
cmake --build "$BUILD" --target layerskip-bench
[ -f "$C/train.jsonl" ] || "$PY" tools/train/chat_prompts.py --out "$C"
"$PY" tools/train/chat_generate.py --prompts "$C/heldout.jsonl" --out "$C/heldout.ids" \
      --bench "$BUILD/engine/layerskip-bench" --model "$MODEL"
"$PY" tools/train/chat_generate.py --prompts "$C/train.jsonl" --out "$C/train.ids" --limit "${CHAT_TRAIN:-204}" \
      --bench "$BUILD/engine/layerskip-bench" --model "$MODEL"
for part in heldout train; do
  [ -f "$C/$part.bin" ] && continue
  "$DUMP" --model "$MODEL" --tokens-file "$C/$part.ids" --out "$C/$part.bin.tmp" --exits "$E" --seq-len 512 \
          --topk 32 --threads 1
  mv "$C/$part.bin.tmp" "$C/$part.bin"
done
# fine-tuning from the raw stage's exported (F16) weights, its frequency table
# kept; each step draws 4 chat sequences (70 %) or 4 raw ones (30 %)
"$PY" tools/train/adapter.py train --model "$MODEL" --train "${TRAIN[@]}" --train2 "$C/train.bin" --mix 0.7 \
      --heldout "$C/heldout.bin" --table "$RAW_OUT" --out "$C/run" --exit "$E" --ffn-dim "$FFN" \
      --init "gguf:$RAW_OUT" --warmup 10 --eval-every 200 --draft-vocab "$N" --steps 100000 \
      --time-budget "${CHAT_BUDGET:-12}" --batch "${CHAT_BATCH:-4}" --batch2 "${CHAT_BATCH:-4}" \
      --lr "${CHAT_LR:-3e-4}" --threads 1 --resume
for part in chat raw; do
  ho=$C/heldout.bin; [ $part = raw ] && ho=$WORK/heldout.bin
  "$PY" tools/train/adapter.py eval --model "$MODEL" --heldout "$ho" --table "$RAW_OUT" \
        --ckpt "$RAW_OUT" "$C/run/ckpt.pt" --draft-vocab "$N" --threads "$THREADS" --json "$C/eval-$part.json"
done
"$PY" tools/train/adapter.py export --model "$MODEL" --table "$RAW_OUT" --ckpt "$C/run/ckpt.pt" --out "$OUT"
