#!/bin/sh
# entrypoint.sh: the container's entry point (deploy/docker/Dockerfile).
# The first argument picks the program; the rest are its flags:
#
#   layerskipd ... | daemon ...          the gRPC daemon (rank 0 / single process)
#   layerskip-worker ... | worker ...    a verifier stage (MPI ranks 1..N-1)
#   layerskip ... | layerskip-bench ...  the client, the engine benchmark
#   mpirun ...                           OpenMPI's launcher (pipeline in one container)
#   --flag ...                           layerskipd --flag ...
#   anything else                        run as given (e.g. bash, for a look inside)
#
# exec: the program replaces this shell, so `docker stop`'s SIGTERM reaches
# layerskipd as PID 1; it handles SIGTERM itself (drains running requests,
# then exits 0). Keep `docker stop -t` above --drain-seconds (default 30).
# mpirun is the exception (below): this shell stays PID 1 and hands
# SIGTERM to layerskipd.
set -eu

usage() {
    sed -n '2,10s/^# \{0,1\}//p' "$0"
}

if [ $# -eq 0 ]; then
    usage
    exit 2
fi

case "$1" in
    layerskipd | layerskip-worker | layerskip | layerskip-bench)
        exec "$@" ;;
    mpirun)
        # Not exec: mpirun as PID 1 would get docker stop's SIGTERM and pass
        # it on to the ranks only odls_base_sigkill_timeout s later (SIGKILL
        # after as long again). This shell stays PID 1 and gives SIGTERM to
        # layerskipd alone: it drains, stops the workers, mpirun exits 0.
        "$@" &
        child=$!
        trap 'for p in /proc/[0-9]*; do [ "$(cat "$p/comm" 2>/dev/null)" = layerskipd ] && kill -TERM "${p#/proc/}"; done' TERM INT
        while :; do
            rc=0
            wait "$child" || rc=$? # set -e: a wait cut short by the trap is not an error
            kill -0 "$child" 2>/dev/null || exit "$rc"
        done ;;
    daemon)
        shift
        exec layerskipd "$@" ;;
    worker)
        shift
        exec layerskip-worker "$@" ;;
    -h | --help | help)
        usage
        exit 0 ;;
    -*)
        exec layerskipd "$@" ;;
    *)
        exec "$@" ;;
esac
