#!/usr/bin/env python3
"""Golden tokenizer data from llama.cpp (through llama-cpp-python).

Writes tests/data/tokenizer_golden_<vocab>.json for three vocabularies:
  smollm2    models/SmolLM2-135M-Instruct.Q4_1.gguf   (byte-level BPE, pre "smollm")
  llama-spm  models/vocab/ggml-vocab-llama-spm.gguf   (Llama 2 SentencePiece)
  llama-bpe  models/vocab/ggml-vocab-llama-bpe.gguf   (Llama 3, pre "llama-bpe")

For every test string (bytes) it records what llama.cpp gives:
  ids       llama_tokenize(add_special=False, parse_special=False)
  ids_bos   same with add_special=True; omitted when it equals bos_prefix + ids
            (bos_prefix, at the top, is [BOS] when the vocabulary adds one)
  ids_sp    parse_special=True; omitted when equal to ids
  detok     llama.cpp's detokenization of ids: the concatenated
            llama_token_to_piece(special=False) pieces, the first with
            lstrip=1 on SentencePiece vocabularies (llama_detokenize without
            its clean_up_tokenization_spaces pass); omitted when equal to the
            input bytes
  detok_repl  detok decoded as UTF-8 with U+FFFD replacement (Python's
            errors="replace"), only when detok is not valid UTF-8
A string is stored as "text" when it is valid UTF-8 without NUL, else as
"hex"; detok likewise ("detok" / "detok_hex").

Rerun (from the repository root, after scripts/setup.sh installed models/):
  /opt/refenv/bin/python scripts/golden_tokenizer.py
      [--models models] [--out tests/data]
/opt/refenv is a venv with llama-cpp-python==0.3.36 (vendors llama.cpp),
gguf, numpy and tokenizers:
  python3 -m venv /opt/refenv && /opt/refenv/bin/pip install \
      llama-cpp-python==0.3.36 gguf numpy tokenizers

Optional cross-check with Hugging Face tokenizers: test_tokenizer writes the
tokenizer.json files produced by our writer (tests/support/tokjson_writer.c)
to its temp dir as tokjson_<vocab>/tokenizer.json; then
  /opt/refenv/bin/python scripts/golden_tokenizer.py --hf-check build/tests/tmp
loads them with tokenizers.Tokenizer and compares its ids (it always parses
special tokens, so against ids_sp) for every valid UTF-8 golden string, and
prints the mismatches. It does not write anything.
"""
import argparse
import ctypes
import json
import os
import sys

VOCABS = [
    ("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    ("llama-spm", "vocab/ggml-vocab-llama-spm.gguf"),
    ("llama-bpe", "vocab/ggml-vocab-llama-bpe.gguf"),
]


def u(s):
    return s.encode("utf-8")


def build_strings():
    """The test strings (bytes), the same for every vocabulary."""
    S = []

    def add(*xs):
        for x in xs:
            S.append(x if isinstance(x, bytes) else u(x))

    # ASCII prose
    add("Hello world", " Hello world", "Hello World", " Hello World!", "Hello, world!",
        "The quick brown fox jumps over the lazy dog.",
        "It was the best of times, it was the worst of times.",
        "A", "a", "I", " a", "ab", "the", " the", "The", "THE", "tHe",
        "Once upon a time, there was a little girl named Lily.",
        "What's the capital of France? Paris is the capital of France.",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt.",
        "e.g. i.e. etc. Mr. Smith vs. Dr. Jones",
        "hello...world!!! ??? ?!",
        "(parenthesized) [bracketed] {braced} <angled>",
        "semi;colon:colon,comma.period",
        "ALL CAPS SENTENCE WITH WORDS",
        "mIxEd CaSe WoRdS",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "pneumonoultramicroscopicsilicovolcanoconiosis")
    # a paragraph
    add("Large language models are trained on vast amounts of text. They learn to predict "
        "the next token, and in doing so they pick up grammar, facts, and some reasoning "
        "ability. Tokenization splits text into pieces; byte-level BPE never needs an "
        "unknown token, while SentencePiece falls back to bytes.")
    # code
    add("int main(void) {\n    printf(\"hello\\n\");\n    return 0;\n}\n",
        "#include <stdio.h>\n#define MAX(a, b) ((a) > (b) ? (a) : (b))\n",
        "for (int i = 0; i < n; i++) { sum += a[i] * b[i]; }",
        "static inline uint32_t rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }",
        "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
        "class Foo:\n\tdef __init__(self):\n\t\tself.x = [1, 2, 3]\n",
        "import numpy as np\nx = np.arange(10).reshape(2, 5)  # comment\nprint(x.T @ x)\n",
        "    if __name__ == \"__main__\":\n        main()\n",
        "lambda x: x**2 if x > 0 else -x",
        "{\n  \"name\": \"test\",\n  \"values\": [1, 2.5, -3e10],\n  \"nested\": {\"ok\": true, \"none\": null}\n}",
        "{\"a\":1,\"b\":[true,false,null],\"c\":\"\\u00e9\"}",
        "[\n    {\n        \"id\": 1\n    }\n]",
        "SELECT * FROM users WHERE id = 42 AND name LIKE '%bob%';",
        "<div class=\"main\"><p>Hello &amp; welcome</p></div>",
        "$ ls -la /usr/local/bin | grep -v '^d' && echo \"done\" > /dev/null 2>&1",
        "fn main() { let v: Vec<i32> = (0..10).collect(); println!(\"{:?}\", v); }",
        "x += 1; y -= 2; z *= 3; w /= 4; a %= 5; b <<= 1; c >>= 2; d &&= e || f",
        "a->b.c[0]::d ?? e ?: f === g !== h <=> i",
        "https://www.example.com/path/to/page?query=1&lang=en#section",
        "user.name+tag@example.co.uk",
        "# Title\n\n## Subtitle\n\n- item one\n- item two\n\n```python\nprint(1)\n```\n",
        "\\begin{equation} E = mc^2 \\end{equation} $\\alpha + \\beta_i^2$",
        "C:\\Windows\\System32\\drivers\\etc\\hosts")
    # whitespace
    for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 33):
        add(" " * n)
    add("\t", "\t\t", "\t\t\t\t", "\n", "\n\n", "\n\n\n", "\n\n\n\n\n", "\r\n", "\r\n\r\n", "\r",
        "\t\n", " \n", "\n ", " \n ", "\n\t\n", " \t \t ", "\u000b", "\u000c",
        "   Hello", "Hello   ", "   Hello   ", "\tHello", "Hello\t", "\nHello", "Hello\n",
        "Hello\n\nWorld", "Hello \n World", "Hello  World", "Hello   World    !",
        "    Hello\n    Hello", " (", "\n =", "' era", "a  b   c    d     e",
        "line1\nline2\r\nline3\rline4", "trailing spaces   \n   leading spaces",
        "\u00a0", "a\u00a0b", "\u3000", "x\u3000y", "a\u2003b", "\u2028", "a\u0085b", "a\u180eb",
        "a\u200bb", "a\u202fb \u205f c")
    # digits and numbers
    for n in range(1, 21):
        add("".join(str((i * 7 + 3) % 10) for i in range(n)))
    add("3", "33", "333", "3333", "33333", "333333", "3333333", "33333333", "333333333",
        "0", "00", "007", "42", " 42", "a42", "42a", "x1y2z3", "-17", "+17", "3.14159",
        "2.718281828459045", "1,000,000", "1.000.000,50", "1e10", "6.022e23", "0x1F", "0b1010",
        "12:30:45", "2024-01-15", "(555) 123-4567", "v1.2.3", "100%", "$19.99", "€20", "1/2 + 3/4",
        "١٢٣ ٤٥٦", "१२३", "²³ ½ ⅓ Ⅻ", "ten 10 twenty 20 thirty 30")
    # accents / Latin-1 / Latin Extended
    add("café", "naïve résumé", "Äpfel über Öl", "Straße", "Ærø Øst Åse", "ñandú", "Ça va? Très bien!",
        "Zürich Genève", "ÀÁÂÃÄÅàáâãäå", "ÇçÈÉÊËèéêë", "Łódź Kraków", "Čeština Ľubovník",
        "e\u0301", "n\u0303o", "Ĳsselmeer ĳ ŉ ſ", "İstanbul ıi", "¿Qué? ¡Sí!", "«guillemets» „Zitat“",
        "©®™ §¶ °±µ")
    # other scripts
    add("Привет, мир!", "нещо на Български", "Съешь же ещё этих мягких французских булок",
        "Γειά σου Κόσμε", "Ελληνικά: αβγδεζηθ ΑΒΓΔ", "مرحبا بالعالم", "اللغة العربية جميلة",
        "שלום עולם", "नमस्ते दुनिया", "हिन्दी भाषा", "สวัสดีชาวโลก", "ភាសាខ្មែរ",
        "កាន់តែពិសេសអាចខលចេញ", "你好，世界", "我想在apple工作1314151天～", "中文字符测试：一二三四五",
        "こんにちは世界", "カタカナとひらがな", "안녕하세요 세계", "한국어 텍스트", "Tiếng Việt có dấu",
        "ქართული ენა", "Հայերեն", "ᚠᛇᚻ᛫ᛒᛦᚦ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐛𝐨𝐥𝐝", "𠜎𠜱𠝹𠱓")
    # emoji
    add("🦙", " this is 🦙.cpp", "😀😃😄", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸🇫🇷🇯🇵", "1️⃣ #️⃣",
        "❤️", "☕ ✅ ✨", "🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅ (only emoji that has its own token)",
        "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～", "🧑🏿‍💻 coding", "🫠🫡")
    # contractions
    add("it's", "It's", "IT'S", "he'll", "HE'LL", "don't", "DON'T", "they're", "we've", "I'm",
        "she'd", "I'M", "We'Ve a'lL", "Let's go", "the cat's toy", "rock 'n' roll", "'s", "'",
        "''", "'''", "it’s typographic", "o'clock 90's",
        "I've been 'here' and 'there' but they'll say it wasn't so")
    # special token texts (parsed only with parse_special)
    add("<s>", "</s>", "<unk>", "<s>Hello</s>", "<s> Hello", "Hello<s>", "<|im_start|>",
        "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
        "<|begin_of_text|>", "<|eot_id|>",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
        "<|im_start", "im_start|>", "<|<|im_end|>|>", "<repo_name>x<file_sep>y", "[INST] hi [/INST]",
        "<s>[INST] <<SYS>>\nsys\n<</SYS>>\n\nhi [/INST]", "<<|eot_id|>>", "<0x41>", " <s> </s> ")
    # misc unicode
    add("\u0378 unassigned", "\ue000 private use", "\ufeffBOM", "\u200d", "a\u200db", "\u202eRTL override",
        "∀x∈ℝ: x²≥0", "→ ← ↑ ↓ ⇒ ⇔", "½¼¾", "©️", "ﬁ ligature", "Ｆｕｌｌｗｉｄｔｈ",
        "\u00ad soft hyphen", "tab\tseparated\tvalues", "\u0000", "a\u0000b", "\u0001\u0002\u001f",
        "\u007f", "\ufffd", "\ufffd\ufffd")
    # invalid UTF-8 (stored as hex); avoid 4-byte forms above U+10FFFF, which
    # llama.cpp cannot handle
    add(b"\xff", b"\xfe\xff", b"\x80", b"\x80\x81\x82", b"abc\xffdef", b"\xc3", b"\xc3(",
        b"caf\xc3", b"\xe4\xb8", b"\xe4\xb8 abc", b"\xf0\x9f\xa6", b"\xf0\x9f\xa6 x",
        b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xed\xbf\xbf x",
        b"Hello \xff World", b"\xf8\x88\x80\x80\x80", b"\xfc abc", b"\xe2\x96", b"\xe2\x96\x81\xe2\x96",
        b"ok \xce\xbb \xce", b" \x9f\x98\x80", b"\xa0\xa1")
    # repetitions
    add("a" * 50, "ab" * 30, "!" * 40, "=" * 33, "-" * 80, "_" * 17, "." * 12, "\u00e9" * 20,
        "🦙" * 5, "1" * 25, "\n" * 12)
    seen = set()
    out = []
    for s in S:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def is_text(b):
    if b"\x00" in b:
        return False
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def enc_bytes(d, key, b):
    if is_text(b):
        d[key] = b.decode("utf-8")
    else:
        d[key + "_hex"] = b.hex()


def dec_entry(e, key):
    if key in e:
        return e[key].encode("utf-8")
    return bytes.fromhex(e[key + "_hex"])


def piece(vocab, tok, lstrip, special):
    import llama_cpp
    buf = ctypes.create_string_buffer(256)
    n = llama_cpp.llama_token_to_piece(vocab, tok, buf, 256, lstrip, special)
    if n < 0:
        buf = ctypes.create_string_buffer(-n)
        n = llama_cpp.llama_token_to_piece(vocab, tok, buf, -n, lstrip, special)
    return buf.raw[:n]


def golden(name, path, strings):
    import llama_cpp
    from llama_cpp import Llama
    m = Llama(model_path=path, vocab_only=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(m.model)
    spm = llama_cpp.llama_vocab_type(vocab) == llama_cpp.LLAMA_VOCAB_TYPE_SPM
    bos_prefix = m.tokenize(b"", add_bos=True, special=False)
    doc = {
        "vocab": name,
        "model_file": path,
        "generator": "scripts/golden_tokenizer.py (llama-cpp-python %s)" % llama_cpp.__version__,
        "kind": "spm" if spm else "bpe",
        "n_vocab": llama_cpp.llama_vocab_n_tokens(vocab),
        "bos": llama_cpp.llama_vocab_bos(vocab),
        "eos": llama_cpp.llama_vocab_eos(vocab),
        "bos_prefix": bos_prefix,
        "strings": [],
    }
    for s in strings:
        ids = m.tokenize(s, add_bos=False, special=False)
        ids_bos = m.tokenize(s, add_bos=True, special=False)
        ids_sp = m.tokenize(s, add_bos=False, special=True)
        detok = b"".join(piece(vocab, t, 1 if (spm and i == 0) else 0, False) for i, t in enumerate(ids))
        e = {}
        enc_bytes(e, "text", s)
        e["ids"] = ids
        if ids_bos != bos_prefix + ids:
            e["ids_bos"] = ids_bos
        if ids_sp != ids:
            e["ids_sp"] = ids_sp
        if detok != s:
            enc_bytes(e, "detok", detok)
        try:
            detok.decode("utf-8")
        except UnicodeDecodeError:
            e["detok_repl"] = detok.decode("utf-8", errors="replace")
        doc["strings"].append(e)
    return doc


def dump(doc, fname):
    # one string per line keeps the file small and diffable
    head = {k: v for k, v in doc.items() if k != "strings"}
    lines = [json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in doc["strings"]]
    with open(fname, "w", encoding="utf-8") as f:
        f.write(json.dumps(head, ensure_ascii=False, separators=(", ", ": "))[:-1])
        f.write(', "strings": [\n' + ",\n".join(lines) + "\n]}\n")


def hf_check(tmpdir, outdir):
    from tokenizers import Tokenizer
    total_bad = 0
    for name, _ in VOCABS:
        tj = os.path.join(tmpdir, "tokjson_%s" % name, "tokenizer.json")
        gf = os.path.join(outdir, "tokenizer_golden_%s.json" % name)
        if not os.path.exists(tj):
            print("%s: %s missing (run test_tokenizer first)" % (name, tj))
            continue
        tok = Tokenizer.from_file(tj)
        doc = json.load(open(gf, encoding="utf-8"))
        n = bad = 0
        for e in doc["strings"]:
            s = dec_entry(e, "text")
            if not is_text(s):
                continue
            n += 1
            want = e.get("ids_sp", e["ids"])
            got = tok.encode(s.decode("utf-8"), add_special_tokens=False).ids
            if got != want:
                bad += 1
                if bad <= 8:
                    print("%s: %r\n  llama.cpp %s\n  hf        %s" % (name, s, want, got))
        print("%s: Hugging Face tokenizers agrees on %d of %d strings" % (name, n - bad, n))
        total_bad += bad
    return total_bad


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="models")
    ap.add_argument("--out", default="tests/data")
    ap.add_argument("--hf-check", metavar="TMPDIR", help="compare Hugging Face tokenizers on our tokenizer.json files")
    a = ap.parse_args()
    if a.hf_check:
        hf_check(a.hf_check, a.out)
        return
    strings = build_strings()
    for name, rel in VOCABS:
        path = os.path.join(a.models, rel)
        doc = golden(name, path, strings)
        fname = os.path.join(a.out, "tokenizer_golden_%s.json" % name)
        dump(doc, fname)
        print("%s: %d strings -> %s (%d bytes)" % (name, len(doc["strings"]), fname, os.path.getsize(fname)))


if __name__ == "__main__":
    sys.exit(main())
