/* layerskip-worker: a verifier stage of the MPI pipeline (ranks 1..N-1).
 * Everything it needs (model path, layer split, limits) comes from rank 0;
 * the options below only override or double-check it. Exits 0 when rank 0
 * shuts the pipeline down, 1 when a link breaks. Ignores SIGTERM (see
 * main); SIGINT and SIGKILL end it. */
#include "pipeline.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: mpirun -np 1 layerskipd --model M ... : -np N layerskip-worker [options]\n"
            "  --model PATH    load the model from PATH instead of rank 0's path (same file elsewhere)\n"
            "  --stages LIST   check that rank 0 uses this split, like \"0-8,8-20,20-30\"\n"
            "  --threads N     compute threads of this rank (default: rank 0's setting)\n"
            "  --verbose       log setup failures and ignored messages to stderr\n");
}

int main(int argc, char **argv) {
    lsw_worker_options o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--model") == 0 && has_val) {
            o.model_path = argv[++i];
        } else if (strcmp(a, "--stages") == 0 && has_val) {
            o.stages = argv[++i];
        } else if (strcmp(a, "--threads") == 0 && has_val) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1024) {
                fprintf(stderr, "layerskip-worker: --threads \"%s\" must be an integer in [1, 1024]\n", argv[i]);
                return 2;
            }
            o.n_threads = (int)v;
        } else if (strcmp(a, "--verbose") == 0) {
            o.verbose = true;
        } else {
            fprintf(stderr, "layerskip-worker: unknown option or missing value: %s (see --help)\n", a);
            return 2;
        }
    }
    /* mpirun answers SIGTERM (or a dead rank) by sending SIGTERM to every
     * rank, then SIGKILL odls_base_sigkill_timeout seconds later. A worker
     * outlives the SIGTERM so rank 0 (layerskipd) can drain its requests
     * through the pipeline and then send SHUTDOWN; the SIGKILL still ends it
     * when rank 0 is gone. */
    signal(SIGTERM, SIG_IGN);
    int provided = 0;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "layerskip-worker: MPI_Init_thread failed (start it through mpirun)\n");
        return 1;
    }
    ls_err err = {{0}};
    ls_status st = lsw_worker_run(MPI_COMM_WORLD, &o, &err);
    if (st != LS_OK) {
        int rank = 0;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        fprintf(stderr, "layerskip-worker rank %d: %s\n", rank, err.msg);
    }
    MPI_Finalize();
    return st == LS_OK ? 0 : 1;
}
