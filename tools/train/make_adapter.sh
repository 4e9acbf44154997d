#!/usr/bin/env bash
# make_adapter.sh: the committed draft adapter, end to end (adapters/README.md):
# corpus -> engine/dump-states -> frequency table -> training -> evaluation -> GGUF.
#
#   tools/train/make_adapter.sh            # everything, work files in build/adapter-work
#   WORK=/tmp/aw STEPS=200 tools/train/make_adapter.sh   # a quicker, weaker run
#
# Settings (environment): MODEL, BUILD (configured CMake build folder), WORK,
# E, FFN, INIT, N (draft vocab trained for), STEPS, TIME_BUDGET (minutes; 0 = steps
# only, reproducible), BATCH, LR, THREADS, CONT_BUDGET (total minutes after the
# continuation at a constant CONT_LR; 0 = no continuation), CONT_THREADS,
# OUT (the adapter GGUF). A finished step is skipped when its output exists;
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

# 6. the sidecar GGUF
mkdir -p "$(dirname "$OUT")"
"$PY" tools/train/adapter.py export --model "$MODEL" --table "$WORK/table.npy" --ckpt "$WORK/run/ckpt.pt" --out "$OUT"
