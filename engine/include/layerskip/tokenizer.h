/* tokenizer.h (public): the two tokenizer kinds of the Llama family.
 *
 * LS_TOK_SPM: SentencePiece-style BPE (Llama 2, CodeLlama). Text is
 *   normalised (spaces -> U+2581 "▁", a "▁" prefix when add_space_prefix),
 *   split into UTF-8 characters, merged greedily by piece score, and
 *   characters missing from the vocabulary fall back to <0xNN> byte tokens.
 * LS_TOK_BPE: byte-level BPE (GPT-2 style; Llama 3, SmolLM2). Text is split by
 *   pre-tokenizer regexes (PCRE2 with Unicode properties), bytes are mapped
 *   to printable code points (GPT-2 byte<->unicode table), then merged by
 *   merge rank.
 * Special/control tokens (e.g. <|im_start|>, <s>) appearing in the text are
 * matched as whole tokens when parse_special is true.
 *
 * Detokenization never emits a partial UTF-8 character: ls_detok_stream
 * holds incomplete trailing bytes until the next token completes them. */
#ifndef LS_TOKENIZER_H
#define LS_TOKENIZER_H

#include "layerskip/ls_common.h"

struct gguf_ctx;

typedef enum ls_tok_kind { LS_TOK_SPM = 1, LS_TOK_BPE = 2 } ls_tok_kind;

/* token attributes (GGUF tokenizer.ggml.token_type values) */
typedef enum ls_tok_type {
    LS_TOKT_NORMAL = 1, LS_TOKT_UNKNOWN = 2, LS_TOKT_CONTROL = 3,
    LS_TOKT_USER_DEFINED = 4, LS_TOKT_UNUSED = 5, LS_TOKT_BYTE = 6,
} ls_tok_type;

typedef struct ls_tokenizer ls_tokenizer;

/* from GGUF metadata: tokenizer.ggml.{model,pre,tokens,scores,token_type,
 * merges,bos_token_id,eos_token_id,unknown_token_id,add_bos_token,
 * add_eos_token,add_space_prefix}. model "llama" -> SPM, "gpt2" -> BPE. */
ls_status ls_tokenizer_from_gguf(const struct gguf_ctx *g, ls_tokenizer **out, ls_err *err);
/* from a Hugging Face directory: tokenizer.json (model.type BPE; byte_fallback
 * -> SPM kind, ByteLevel pre-tokenizer -> BPE kind; added_tokens),
 * tokenizer_config.json (bos/eos token, add_bos_token) and
 * generation_config.json (bos_token_id/eos_token_id, which win). */
ls_status ls_tokenizer_from_hf_dir(const char *dir, ls_tokenizer **out, ls_err *err);
/* from a tokenizer.json buffer alone (fuzzing, tests) */
ls_status ls_tokenizer_from_json(const char *json, size_t len, const char *name,
                                 ls_tokenizer **out, ls_err *err);
void ls_tokenizer_free(ls_tokenizer *t);

ls_tok_kind ls_tokenizer_kind(const ls_tokenizer *t);
int32_t ls_tokenizer_n_vocab(const ls_tokenizer *t);
int32_t ls_tokenizer_bos(const ls_tokenizer *t);   /* -1 if none */
int32_t ls_tokenizer_eos(const ls_tokenizer *t);   /* -1 if none */
bool ls_tokenizer_add_bos(const ls_tokenizer *t);  /* model's default */
/* true for EOS and other end-of-generation tokens (e.g. <|eot_id|>, <|im_end|>) */
bool ls_tokenizer_is_eog(const ls_tokenizer *t, int32_t id);
/* raw piece text of a token as stored in the vocabulary */
const char *ls_tokenizer_piece(const ls_tokenizer *t, int32_t id);

/* --- vocabulary details (tokenizer.json writer, tests) --- */
int32_t ls_tokenizer_unk(const ls_tokenizer *t);  /* -1 if none */
bool ls_tokenizer_add_eos(const ls_tokenizer *t);
/* SPM: a "▁" is prefixed to every text fragment */
bool ls_tokenizer_add_space_prefix(const ls_tokenizer *t);
/* BPE: a pre-token that is itself a token is not merged (Llama 3) */
bool ls_tokenizer_ignore_merges(const ls_tokenizer *t);
/* pre-tokenizer name: tokenizer.ggml.pre of a GGUF ("llama-bpe", "smollm",
 * ...); for tokenizer.json "llama-bpe"/"smollm"/"gpt2" when the regexes are
 * those, else "custom" */
const char *ls_tokenizer_pre(const ls_tokenizer *t);
size_t ls_tokenizer_piece_len(const ls_tokenizer *t, int32_t id);
/* SPM merge score (GGUF tokenizer.ggml.scores; from a tokenizer.json minus
 * the rank of the first merge giving the token, -INFINITY when none does) */
float ls_tokenizer_score(const ls_tokenizer *t, int32_t id);
ls_tok_type ls_tokenizer_token_type(const ls_tokenizer *t, int32_t id); /* 0 if undefined */
/* id of the token whose piece is exactly text[0..len), or -1 */
int32_t ls_tokenizer_find(const ls_tokenizer *t, const char *text, size_t len);
/* BPE merges in rank order ("a b" = merge(i) gives a and b; NUL-terminated) */
int32_t ls_tokenizer_n_merges(const ls_tokenizer *t);
bool ls_tokenizer_merge(const ls_tokenizer *t, int32_t i, const char **a, const char **b);
/* BPE pre-tokenizer regexes, applied in order (PCRE2 syntax as loaded) */
int ls_tokenizer_n_pretok_regex(const ls_tokenizer *t);
const char *ls_tokenizer_pretok_regex(const ls_tokenizer *t, int i);

/* Encode `len` bytes (any bytes; invalid UTF-8 is handled, never rejected:
 * BPE encodes each undecodable byte as U+FFFD, SPM as a <0xNN> token, like
 * llama.cpp). Returns the number of ids written to ids[0..cap) or, if cap is
 * too small, the negative of the needed count (call again; ids may be NULL
 * with cap 0); INT64_MIN when out of memory. add_bos prepends BOS (when the
 * vocabulary has one; ls_tokenizer_add_bos says whether the model wants it).
 * parse_special matches control/unknown token texts in the input;
 * user-defined tokens are always matched (as llama.cpp and Hugging Face).
 * Thread-safe: the tokenizer is only read. */
int64_t ls_tokenize(const ls_tokenizer *t, const char *text, size_t len,
                    bool add_bos, bool parse_special, int32_t *ids, int64_t cap);

/* Bytes of one token as it appears in text (SPM: "▁" -> " ", <0xNN> -> the
 * byte; BPE: unicode->byte mapping). Control and unknown tokens give ""
 * unless render_special (then their text); user-defined tokens give their
 * text; unused tokens and invalid ids give "". Returns bytes written (or
 * -needed if cap too small). */
int64_t ls_token_to_bytes(const ls_tokenizer *t, int32_t id, bool render_special,
                          char *buf, int64_t cap);
/* Decode a whole sequence into buf (NUL-terminated). The SPM leading space of
 * the first token is removed when the model adds a space prefix (as
 * SentencePiece does; "first" = the first token that yields any text, so a
 * leading BOS does not count). Returns the length, or -needed where needed
 * counts the NUL (buf may be NULL with cap 0). Invalid ids yield nothing. */
int64_t ls_detokenize(const ls_tokenizer *t, const int32_t *ids, int64_t n,
                      bool render_special, char *buf, int64_t cap);

/* Streaming detokenizer: feed one token, get the text that is now complete
 * (whole UTF-8 characters only; an invalid byte sequence is emitted as
 * U+FFFD once it is known to be invalid). */
typedef struct ls_detok_stream {
    const ls_tokenizer *tok;
    bool render_special;
    bool first;                /* strip SPM leading space on first token */
    unsigned char pending[8];  /* incomplete UTF-8 tail */
    int n_pending;
} ls_detok_stream;
void ls_detok_stream_init(ls_detok_stream *s, const ls_tokenizer *t, bool render_special);
/* writes the newly complete text at out (cap bytes, NUL-terminated) and
 * returns its length; if cap is too small returns -needed (NUL included)
 * and leaves the stream unchanged. Set s->first = false after init when
 * continuing a prompt, to keep the SPM leading space. */
int64_t ls_detok_stream_push(ls_detok_stream *s, int32_t id, char *out, int64_t cap);
/* flush pending bytes at the end (as U+FFFD if incomplete) */
int64_t ls_detok_stream_flush(ls_detok_stream *s, char *out, int64_t cap);

#endif
