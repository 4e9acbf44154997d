#!/usr/bin/env bash
# check_layering.sh SOURCE_DIR LAYERSKIP_BIN: the dependency rule of
# docs/ARCHITECTURE.md. engine/ never sees MPI, gRPC or protobuf; client/ talks
# gRPC only (no engine headers, and the built client holds no engine code).
set -u
src=$1 client_bin=$2
fail=0
hits=$(grep -rlE '#include *[<"](mpi\.h|grpc/|protobuf-c/|layerskip/v1/)' "$src/engine" 2>/dev/null)
[ -z "$hits" ] || { echo "engine/ includes MPI/gRPC/protobuf headers: $hits"; fail=1; }
hits=$(grep -rlE '#include *[<"](layerskip/(engine|generate|sampler|tokenizer|ls_common)\.h|mpi\.h)' \
       "$src/client" --include='*.c' --include='*.h' 2>/dev/null)
[ -z "$hits" ] || { echo "client/ includes engine or MPI headers: $hits"; fail=1; }
syms=$(nm --defined-only "$client_bin" 2>/dev/null | grep -cE ' T (ls_forward|ls_model_load|ls_generate)$')
[ "$syms" = 0 ] || { echo "$client_bin contains engine functions"; fail=1; }
nm --defined-only "$client_bin" >/dev/null 2>&1 || { echo "cannot read symbols of $client_bin"; fail=1; }
[ $fail = 0 ] && echo "layering ok: engine/ without MPI/gRPC/protobuf, client/ without the engine"
exit $fail
