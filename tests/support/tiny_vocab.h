/* tiny_vocab.h: a SentencePiece-style vocabulary of a few tokens as a GGUF
 * holding tokenizer.ggml.* only (the vocab_gguf of an rm_spec): <unk>, <s>,
 * </s>, then "▁a", "▁b", ... ("▁aa", "▁ab", ... past "▁z"). Small
 * vocabularies make a random model's distributions easy to test (chi-square
 * cells) and its greedy text repetitive (n-gram lookup finds matches). */
#ifndef LS_TINY_VOCAB_H
#define LS_TINY_VOCAB_H

#include <stdbool.h>

/* n_vocab in [4, 3 + 26 * 27]; ids: 0 <unk>, 1 <s> (BOS), 2 </s> (EOS) */
bool tv_write_vocab(const char *path, int n_vocab);

#endif
