#!/usr/bin/env bash
# test_batch_resume.sh: `layerskip batch` survives SIGKILL, a torn last line
# and Ctrl-C: after reruns, every id of 200 prompts is in the output exactly
# once, and resumed results equal fresh ones (greedy decoding).
#
#   bash client/tests/test_batch_resume.sh LAYERSKIP LAYERSKIPD MODEL
#
# Starts its own layerskipd on a unix socket in a private temporary
# directory; exits non-zero on the first failed check.
set -uo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 path/to/layerskip path/to/layerskipd path/to/model.gguf" >&2
  exit 2
fi
cli=$1 daemon=$2 model=$3
py=/usr/bin/python3
for f in "$cli" "$daemon"; do [ -x "$f" ] || { echo "FAIL: $f is not executable" >&2; exit 1; }; done
[ -r "$model" ] || { echo "FAIL: model $model is not readable (run scripts/setup.sh)" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ls-resume-XXXXXX")
sock=$tmp/d.sock
dpid= bpid=
cleanup() {
  [ -n "$bpid" ] && kill -9 "$bpid" 2>/dev/null
  if [ -n "$dpid" ]; then kill -TERM "$dpid" 2>/dev/null; wait "$dpid" 2>/dev/null; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$tmp/d.log" ] && { echo "--- daemon log tail:" >&2; tail -20 "$tmp/d.log" >&2; }; exit 1; }

"$daemon" --model "$model" --listen "unix:$sock" --threads 2 --max-sessions 4 --log-level warn >"$tmp/d.log" 2>&1 &
dpid=$!
server=(--server "unix:$sock")
for _ in $(seq 1 300); do
  "$cli" health "${server[@]}" --timeout 1 >/dev/null 2>&1 && break
  kill -0 "$dpid" 2>/dev/null || fail "layerskipd exited during startup"
  sleep 0.2
done
"$cli" health "${server[@]}" >/dev/null || fail "layerskipd is not SERVING after 60 s"
echo "ok: layerskipd SERVING on unix:$sock"

n=200
$py - "$tmp/in.jsonl" "$n" <<'EOF'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    for i in range(n):
        # numbers and strings as ids; short greedy generations
        ident = i if i % 2 else f"id-{i}"
        f.write(json.dumps({"id": ident, "prompt": f"Item {i}: the number after {i} is", "max_tokens": 3}) + "\n")
EOF
out=$tmp/out.jsonl
lines() { [ -f "$out" ] && wc -l <"$out" || echo 0; }

# 1. SIGKILL half-way
"$cli" batch --input "$tmp/in.jsonl" --output "$out" "${server[@]}" --concurrency 4 2>"$tmp/b1.err" &
bpid=$!
while kill -0 "$bpid" 2>/dev/null && [ "$(lines)" -lt 60 ]; do sleep 0.05; done
kill -9 "$bpid" 2>/dev/null
wait "$bpid" 2>/dev/null
bpid=
first=$(lines)
[ "$first" -ge 1 ] && [ "$first" -lt "$n" ] || fail "SIGKILL came at $first of $n lines: nothing to resume"
echo "ok: batch killed with SIGKILL after $first/$n lines"

# 2. a crash in the middle of a write leaves a torn line: the rerun must cut it
printf '{"id":"id-198","text":"torn by a cra' >>"$out"

# 3. Ctrl-C (SIGINT) on the rerun: orderly stop, exit 130, nothing half-written
"$cli" batch --input "$tmp/in.jsonl" --output "$out" "${server[@]}" --concurrency 4 2>"$tmp/b2.err" &
bpid=$!
target=$((first + 40))
while kill -0 "$bpid" 2>/dev/null && [ "$(lines)" -lt "$target" ]; do sleep 0.05; done
kill -INT "$bpid" 2>/dev/null
wait "$bpid"
rc=$?
bpid=
grep -q "removed a torn last line" "$tmp/b2.err" || fail "the rerun did not report the torn line: $(cat "$tmp/b2.err")"
second=$(lines)
if [ "$second" -lt "$n" ]; then
  [ "$rc" -eq 130 ] || fail "interrupted batch exited $rc, expected 130: $(tail -3 "$tmp/b2.err")"
  echo "ok: rerun cut the torn line; Ctrl-C stopped it at $second/$n lines with exit 130"
else
  echo "ok: rerun cut the torn line (it finished before Ctrl-C)"
fi
tail -c 1 "$out" | od -An -c | grep -q '\\n' || fail "the output does not end with a newline after Ctrl-C"

# 4. final rerun to completion
"$cli" batch --input "$tmp/in.jsonl" --output "$out" "${server[@]}" --concurrency 4 2>"$tmp/b3.err"
rc=$?
[ "$rc" -eq 0 ] || fail "final rerun exited $rc: $(tail -3 "$tmp/b3.err")"
grep -q "skipped" "$tmp/b3.err" || fail "final rerun printed no summary"
echo "ok: final rerun exited 0: $(grep '^batch:' "$tmp/b3.err" | tail -1)"

# 5. every id exactly once, every line a result
$py - "$out" "$n" <<'EOF' || fail "output check"
import collections, json, sys
path, n = sys.argv[1], int(sys.argv[2])
raw = open(path, "rb").read()
assert raw.endswith(b"\n"), "output does not end with a newline"
ids = collections.Counter()
for k, line in enumerate(raw.decode().splitlines(), 1):
    o = json.loads(line)  # raises on a torn or merged line
    assert "error" not in o, f"line {k} is an error: {o['error']}"
    for key in ("id", "text", "token_ids", "finish_reason", "stats"):
        assert key in o, f"line {k} lacks {key}"
    assert o["stats"]["generated_tokens"] == len(o["token_ids"]), f"line {k}: token count mismatch"
    ids[json.dumps(o["id"])] += 1
want = collections.Counter(json.dumps(i if i % 2 else f"id-{i}") for i in range(n))
missing = want - ids
extra = ids - want
assert not missing, f"missing ids: {sorted(missing)[:10]}"
assert not extra, f"duplicated or unknown ids: {sorted(extra)[:10]}"
print(f"ok: {n} ids, each exactly once, every line a complete result")
EOF

# 6. resumed results equal fresh ones (greedy is deterministic)
for i in 1 2 150 199; do
  ident=$([ $((i % 2)) -eq 1 ] && echo "$i" || echo "\"id-$i\"")
  want=$("$cli" generate "Item $i: the number after $i is" --max-steps 3 --json "${server[@]}" |
         $py -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["token_ids"]))') || fail "generate $i"
  got=$($py -c '
import json, sys
for line in open(sys.argv[1]):
    o = json.loads(line)
    if json.dumps(o["id"]) == sys.argv[2]: print(json.dumps(o["token_ids"]))' "$out" "$ident")
  [ "$want" = "$got" ] || fail "id $ident: batch token_ids $got, generate gives $want"
done
echo "ok: batch results match single generate calls for 4 ids"

# 7. the rerun of a finished job does nothing and succeeds
"$cli" batch --input "$tmp/in.jsonl" --output "$out" "${server[@]}" 2>"$tmp/b4.err" || fail "rerun of a finished job failed"
[ "$(lines)" -eq "$n" ] || fail "rerun of a finished job changed the output"
grep -q "$n skipped" "$tmp/b4.err" || fail "rerun of a finished job did not skip all $n: $(cat "$tmp/b4.err")"
echo "ok: rerun of the finished job skipped all $n lines"
# 8. layerskip chat: history across turns, /reset, --json, and a batch line with messages equals Chat
got=$(printf 'What is the capital of France?\nAnd of Italy?\n/reset\nAnd of Italy?\n' |
      "$cli" chat --system "You are a helpful assistant." --max-steps 24 "${server[@]}" 2>"$tmp/chat.err") ||
  fail "chat failed: $(cat "$tmp/chat.err")"
[ "$(printf '%s\n' "$got" | sed -n 1p)" = "The capital of France is Paris." ] || fail "chat turn 1: $got"
printf '%s\n' "$got" | sed -n 2p | grep -q "Rome" || fail "chat turn 2 (with history) has no Rome: $got"
[ "$(printf '%s\n' "$got" | wc -l)" -eq 3 ] || fail "chat: expected 3 answers, got: $got"
j=$(printf 'What is the capital of France?\n' |
    "$cli" chat --json --system "You are a helpful assistant." --max-steps 24 "${server[@]}") || fail "chat --json"
t=$(printf '%s' "$j" | $py -c 'import json,sys; o=json.load(sys.stdin); print(o["text"], o["finish_reason"])')
[ "$t" = "The capital of France is Paris. eos" ] || fail "chat --json: $j"
printf '%s\n' '{"id":"m1","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"What is the capital of France?"}],"max_tokens":24}' >"$tmp/chat.jsonl"
"$cli" batch --input "$tmp/chat.jsonl" --output "$tmp/chat.out" "${server[@]}" 2>/dev/null || fail "batch with messages"
t=$($py -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["text"])' "$tmp/chat.out")
[ "$t" = "The capital of France is Paris." ] || fail "batch messages line: $t"
echo "ok: chat keeps history and resets; chat --json and a batch messages line give the Chat answer"
echo "PASS: test_batch_resume"
