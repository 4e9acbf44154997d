/* chat_template.h: chat templates rendered as the model's authors wrote them.
 *
 * A model's chat template (GGUF `tokenizer.chat_template`, or
 * `chat_template` in tokenizer_config.json) is a Jinja2 program. This is an
 * interpreter for the part of Jinja2 that real chat templates use, with the
 * environment Hugging Face's apply_chat_template gives them (the reference
 * the goldens are made with, scripts/golden_chat_templates.py):
 *
 *   - trim_blocks and lstrip_blocks on; `{%-`, `-%}`, `{%+`, `+%}` as in Jinja2
 *   - statements: if/elif/else, for (else, `if` filter, unpacking, loop.*,
 *     break/continue), set (also `set ns.attr`, and block `set`), macro and
 *     call of a macro, filter blocks, generation (renders its body), comments
 *   - expressions: literals, lists, dicts, attribute and subscript access,
 *     slices, calls, filters, tests, arithmetic, comparison, `in`, `~`,
 *     and/or/not, `x if c else y`
 *   - variables: messages (role, content), add_generation_prompt, bos_token,
 *     eos_token, tools and documents (none); functions raise_exception,
 *     namespace, range, dict, strftime_now (as transformers gives them)
 *   - filters, tests and string/dict methods listed in chat_template.c
 *   - Python's printing of values and HF's tojson (ensure_ascii off)
 *
 * Anything else is refused at parse time, or at render time when it depends
 * on values, with an error naming the construct and its line. Rendering stops
 * with an error past a step budget (a loop that does not end), an output size
 * or a nesting depth, never hangs. */
#ifndef LAYERSKIP_CHAT_TEMPLATE_H
#define LAYERSKIP_CHAT_TEMPLATE_H

#include "layerskip/ls_common.h"

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ls_chat_message {
    const char *role;
    const char *content; /* a string: text content only */
} ls_chat_message;

typedef struct ls_chat_template ls_chat_template;

typedef struct ls_chat_render_opts {
    const char *bos_token;      /* NULL: "" */
    const char *eos_token;      /* NULL: "" */
    bool add_generation_prompt; /* end with the assistant's turn opened */
    size_t max_output;          /* bytes of output; 0: 4 MiB */
    long long max_steps;        /* evaluation steps; 0: 5,000,000 */
    long long now;              /* strftime_now's time (seconds since the epoch, local time zone);
                                 * 0: the current time */
} ls_chat_render_opts;

/* Parse a template (len bytes of UTF-8; the template keeps its own copy). Errors: LS_ERR_FORMAT (syntax),
 * LS_ERR_UNSUPPORTED (a construct outside the subset), both naming the line. */
ls_status ls_chat_template_parse(const char *src, size_t len, ls_chat_template **out, ls_err *err);

/* Render n messages. *out is malloc'ed, NUL-terminated, *out_len bytes.
 * raise_exception(msg) in the template gives LS_ERR_INVALID with msg. */
ls_status ls_chat_template_render(const ls_chat_template *t, const ls_chat_message *msgs, int n,
                                  const ls_chat_render_opts *o, char **out, size_t *out_len, ls_err *err);

void ls_chat_template_free(ls_chat_template *t);

#ifdef __cplusplus
}
#endif

#endif
