/* fuzz_chat_template: the Jinja subset's lexer, parser and renderer on
 * arbitrary templates.
 *
 * The input is a template; it is parsed and, when it parses, rendered for a
 * fixed conversation (system, user, assistant, user) with and without the
 * generation prompt, under small step and output limits so that loops which
 * do not end stop quickly. Checked: parse and render either succeed or fail
 * with an error message; a success gives a NUL-terminated output of the
 * length reported, within the output limit; nothing crashes, leaks or hangs
 * (ASan/UBSan in the fuzz build). */
#include "layerskip/chat_template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_OR_DIE(c) do { if (!(c)) { fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c); abort(); } } while (0)

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (size > 1 << 16) return 0;
    ls_chat_template *t = NULL;
    ls_err err = {{0}};
    ls_status st = ls_chat_template_parse((const char *)data, size, &t, &err);
    if (st != LS_OK) {
        CHECK_OR_DIE(t == NULL && err.msg[0] != 0);
        return 0;
    }
    static const ls_chat_message msgs[] = {
        {"system", "You are helpful."}, {"user", "Hi {{ there }} {% if %}"}, {"assistant", "Hello!"},
        {"user", "caf\xc3\xa9 \"q\"\n"}};
    for (int agp = 0; agp < 2; agp++) {
        ls_chat_render_opts o = {.bos_token = "<s>", .eos_token = "</s>", .add_generation_prompt = agp,
                                 .max_output = 1 << 16, .max_steps = 20000, .now = 1768435200};
        char *out = NULL;
        size_t len = 0;
        st = ls_chat_template_render(t, msgs, 4, &o, &out, &len, &err);
        if (st == LS_OK) {
            CHECK_OR_DIE(out != NULL && out[len] == 0 && len <= o.max_output);
        } else {
            CHECK_OR_DIE(out == NULL && err.msg[0] != 0);
        }
        free(out);
    }
    ls_chat_template_free(t);
    return 0;
}
