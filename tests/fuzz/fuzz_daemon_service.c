/* fuzz_daemon_service.c: libFuzzer target for the daemon's request decoding
 * and validation (daemon/service.c), the code every client byte reaches
 * first. The first input byte picks the method (Generate, Tokenize,
 * Detokenize, GetModelInfo, Health.Check by its value mod 5; 0xC4: Chat,
 * through the model's chat template), the rest is the request message.
 * A request is either rejected with a message or accepted; an accepted one
 * must encode a response. Uses the default model's tokenizer
 * ($LS_MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf, loaded once). */
#include "service.h"
#include "layerskip/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lsd_service sv;

static void setup(void) {
    static bool done;
    if (done) return;
    const char *dir = getenv("LS_MODELS_DIR");
    static char path[4096]; /* sv.model_path points here */
    snprintf(path, sizeof path, "%s/SmolLM2-135M-Instruct.Q4_1.gguf", dir ? dir : "models");
    ls_model *m;
    ls_err err;
    if (ls_model_load(path, &m, &err) != LS_OK) {
        fprintf(stderr, "fuzz_daemon_service: %s (set LS_MODELS_DIR or run scripts/setup.sh)\n", err.msg);
        abort();
    }
    memset(&sv, 0, sizeof sv);
    sv.model = m;
    sv.model_path = path;
    sv.n_ctx = 512;
    sv.default_max_tokens = 64;
    sv.default_strategy = LS_STRATEGY_AUTOREGRESSIVE;
    sv.default_exit_layer = 7;
    sv.default_num_speculations = 4;
    sv.draft_min_p = 0.95f;
    sv.max_sessions = 2;
    sv.max_queue = 8;
    const char *tpl = ls_model_chat_template(m);
    static ls_chat_template *ct;
    if (!tpl || ls_chat_template_parse(tpl, strlen(tpl), &ct, &err) != LS_OK) {
        fprintf(stderr, "fuzz_daemon_service: the model's chat template: %s\n", tpl ? err.msg : "none");
        abort();
    }
    sv.chat_template = ct;
    sv.chat_template_source = "model";
    sv.bos_text = "";
    sv.eos_text = "<|im_end|>";
    done = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
    if (size < 1) return 0;
    const uint8_t *req = data + 1;
    const size_t len = size - 1;
    char msg[512];
    uint8_t *out = NULL;
    size_t out_len = 0;
    grpc_status_code rc;
    if (data[0] == 0xC4) {
        lsd_job job;
        lsd_job_init(&job);
        rc = lsd_service_prepare_chat(&sv, req, len, &job, msg, sizeof msg);
        if (rc == GRPC_STATUS_OK && (job.n_prompt < 1 || lsd_service_encode_response(&sv, &job, &out, &out_len) != 0))
            __builtin_trap();
        if (rc != GRPC_STATUS_OK && msg[0] == 0) __builtin_trap();
        lsd_job_clear(&job);
        free(out);
        return 0;
    }
    switch (data[0] % 5) {
    case 0: {
        lsd_job job;
        lsd_job_init(&job);
        rc = lsd_service_prepare_generate(&sv, req, len, &job, msg, sizeof msg);
        if (rc == GRPC_STATUS_OK && lsd_service_encode_response(&sv, &job, &out, &out_len) != 0) __builtin_trap();
        if (rc != GRPC_STATUS_OK && msg[0] == 0) __builtin_trap(); /* every rejection says why */
        lsd_job_clear(&job);
        break;
    }
    case 1: rc = lsd_service_tokenize(&sv, req, len, &out, &out_len, msg, sizeof msg); break;
    case 2: rc = lsd_service_detokenize(&sv, req, len, &out, &out_len, msg, sizeof msg); break;
    case 3: rc = lsd_service_model_info(&sv, req, len, &out, &out_len, msg, sizeof msg); break;
    default: {
        char *name = NULL;
        rc = lsd_service_health_request(req, len, &name, msg, sizeof msg);
        free(name);
        break;
    }
    }
    if (rc == GRPC_STATUS_OK && data[0] % 5 >= 1 && data[0] % 5 <= 3 && !out) __builtin_trap();
    free(out);
    return 0;
}
