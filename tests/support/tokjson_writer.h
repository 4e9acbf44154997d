/* tokjson_writer.h: write a Hugging Face tokenizer.json for a loaded
 * vocabulary, so tests and random-weight Hugging Face model directories get a
 * tokenizer.json without committing large files.
 *
 * SPM vocabularies (Llama 2) become model.type BPE with byte_fallback, a
 * Prepend("▁") + Replace(" " -> "▁") normalizer and merges generated from
 * the piece scores the way transformers' SentencePieceExtractor does: every
 * split of a piece into two pieces, pieces ordered by score (ties: longer
 * first, so runs of "▁" merge left to right as llama.cpp does), then id.
 * BPE vocabularies (Llama 3, SmolLM2) keep their merges; the pre-tokenizer is
 * written as Hugging Face writes it for the pre type (Digits + ByteLevel for
 * smollm, ByteLevel for gpt2, Split(regex) + ByteLevel otherwise).
 * Control, user-defined and unknown tokens go to added_tokens. */
#ifndef LS_TOKJSON_WRITER_H
#define LS_TOKJSON_WRITER_H

#include "layerskip/ls_common.h"
#include "layerskip/tokenizer.h"
#include "gguf.h"

/* tokenizer.json at `path` */
ls_status tokjson_write(const ls_tokenizer *t, const char *path, ls_err *err);
/* tokenizer.json + tokenizer_config.json (bos/eos/unk token, add_bos_token)
 * into the existing directory `dir` */
ls_status tokjson_write_hf_dir(const ls_tokenizer *t, const char *dir, ls_err *err);
/* tokenizer.json from the tokenizer.ggml.* keys of a GGUF; false on failure
 * (the reason on stderr) */
bool tokjson_write_from_gguf(const gguf_ctx *vocab, const char *path);

#endif
