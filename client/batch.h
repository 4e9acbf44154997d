/* batch.h: `layerskip batch`, JSONL in, JSONL out, resumable.
 *
 * Output lines are written in completion order, each with ONE write() of a
 * complete line followed by fdatasync, so after a crash the file holds whole
 * lines plus at most one torn last line; a rerun truncates that, skips the
 * ids already present and yields every id exactly once. */
#ifndef LSC_BATCH_H
#define LSC_BATCH_H

#include "common.h"
#include "gen.h"
#include "rpc.h"

#include <cJSON.h>
#include <stdatomic.h>

/* A set of id keys (the compact JSON text of each "id"). */
typedef struct lsc_idset {
    char **slots;
    size_t cap, count;
} lsc_idset;

void lsc_idset_init(lsc_idset *s);
void lsc_idset_free(lsc_idset *s);
bool lsc_idset_has(const lsc_idset *s, const char *key);
lsc_status lsc_idset_add(lsc_idset *s, const char *key); /* copies key; adding twice is a no-op */

/* Resume: read the output file open on fd (O_RDWR), truncate a torn last
 * line, and add every id found to done. *lines = complete lines kept,
 * *dropped = bytes of a torn line removed. Lines that are not result
 * objects are reported on stderr (with path and line number) and ignored. */
lsc_status lsc_resume_scan(int fd, const char *path, lsc_idset *done, size_t *lines, size_t *dropped, lsc_err *err);

/* One input line, parsed. */
typedef struct lsc_batch_item {
    size_t line_no;
    char *id_key;          /* compact JSON of the id, e.g. "\"a7\"" or "12" */
    char *prompt;          /* or messages (a conversation for the chat template): one of the two */
    Layerskip__V1__ChatMessage *messages;
    Layerskip__V1__ChatMessage **message_ptrs;
    size_t n_messages;
    lsc_gen_params params; /* defaults overridden by the line's fields */
    char *strategy;        /* owned copies of the line's strings */
    char *draft_source;
    char **stop;
    int32_t *stop_ids;
} lsc_batch_item;

/* Parse line (NUL-terminated, no newline) into item, starting from the
 * defaults. On LSC_ERR_INPUT, err says why and item->id_key is set when
 * the id was usable (so the error can be written as that id's result). */
lsc_status lsc_batch_parse_line(const char *line, size_t line_no, const lsc_gen_params *defaults,
                                lsc_batch_item *item, lsc_err *err);
void lsc_batch_item_free(lsc_batch_item *item);

/* The output lines, "\n"-terminated, malloc'd. */
char *lsc_batch_result_line(const char *id_key, const Layerskip__V1__GenerateResponse *r, bool token_ids);
char *lsc_batch_error_line(const char *id_key, const char *code, const char *message);

typedef struct lsc_batch_opts {
    const char *input, *output;
    int concurrency;
    lsc_gen_params defaults;
    double timeout_s;       /* per request; <= 0: none */
    bool token_ids;         /* include "token_ids" in results */
    int progress;           /* 1 = bar, 0 = plain lines, -1 = auto (bar on a terminal) */
    double progress_every_s; /* plain lines: seconds between them */
} lsc_batch_opts;

typedef struct lsc_batch_summary {
    size_t total, done, skipped, failed, invalid_no_id;
    long long tokens, drafted, accepted;
    double seconds;
    bool fatal;        /* the job stopped early (server lost, write error) */
    bool interrupted;
} lsc_batch_summary;

lsc_status lsc_batch_run(lsc_conn *conn, const lsc_batch_opts *o, const atomic_int *interrupted,
                         lsc_batch_summary *sum, lsc_err *err);

#endif
