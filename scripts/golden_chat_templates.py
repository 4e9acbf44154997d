#!/usr/bin/env python3
"""golden_chat_templates.py: reference renders of real chat templates.

  python3 scripts/golden_chat_templates.py [--sdist DIR] [--model GGUF]

Copies every chat template of llama.cpp's source inside the llama-cpp-python
sdist (PyPI; scripts/llamacpp_tools.sh unpacks it into .cache-llamacpp/:
71 in 0.3.36) and SmolLM2's own (the default model's GGUF metadata) to
tests/data/chat_templates/NAME.jinja, renders each for a set of
conversations with Python's jinja2 (PyPI: pip install jinja2) in the
environment Hugging Face's apply_chat_template gives templates, and writes
tests/data/chat_templates/NAME.json:

  {"bos_token", "eos_token", "cases": [{"messages", "add_generation_prompt",
   "output"} or {..., "error", "raised"}]}

("raised": the template's raise_exception; the C renderer must give the same
message. Other errors, such as iterating None, only have to be errors.)

The environment (transformers' render_jinja_template): sandboxed, trim_blocks
and lstrip_blocks on, the loopcontrols extension and {% generation %}, a
tojson filter that is json.dumps(x, ensure_ascii=False, indent=...,
separators=..., sort_keys=...), raise_exception(msg), strftime_now(format)
(here at a fixed time, NOW, in UTC), and the variables messages, tools=None,
documents=None, add_generation_prompt, bos_token and eos_token.

test_chat_template (ctest) renders the same cases with the C renderer and
compares bytes. Rerun this script only to change the test set.
"""
import argparse
import datetime
import json
import os
import shutil
import struct
import sys

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "tests", "data", "chat_templates")

# the test set: every template llama.cpp keeps in vendor/llama.cpp/models/templates/
# (Llama 3.1/3.2/3.3, Hermes, DeepSeek-R1-Distill-Llama, Mistral, Phi-3.5,
# Gemma, Qwen, Granite and others), named by file, and SmolLM2's own
TEMPLATES = {}
TOKENS = {"bos_token": "<s>", "eos_token": "</s>"}

SYSTEM = {"role": "system", "content": "You are a helpful assistant. Answer briefly."}
U1 = {"role": "user", "content": "What is the capital of France?"}
A1 = {"role": "assistant", "content": "The capital of France is Paris."}
U2 = {"role": "user", "content": "  And of Italy? Say it with \"quotes\", a tab\t and caf\u00e9 \u2014 ok?  "}
CONVERSATIONS = [[U1], [SYSTEM, U1], [U1, A1, U2], [SYSTEM, U1, A1, U2], [SYSTEM]]


class GenerationTracker(Extension):
    """{% generation %}...{% endgeneration %}: renders its body (HF's AssistantTracker without the mask)"""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


NOW = 1768435200  # 2026-01-15 00:00:00 UTC: strftime_now's time in the goldens (the C test passes the same)


def strftime_now(fmt):
    return datetime.datetime.fromtimestamp(NOW, tz=datetime.timezone.utc).strftime(fmt)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTracker, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def gguf_string(path, key):
    """one string from a GGUF file's metadata (a minimal reader: v2/v3 headers)"""
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError("%s: not a GGUF file" % path)
        (version,) = struct.unpack("<I", f.read(4))
        if version < 2:
            raise ValueError("%s: GGUF v%d" % (path, version))
        _, n_kv = struct.unpack("<QQ", f.read(16))
        sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

        def rstr():
            (n,) = struct.unpack("<Q", f.read(8))
            return f.read(n)

        def skip(t):
            if t in sizes:
                f.read(sizes[t])
            elif t == 8:
                rstr()
            elif t == 9:
                at, n = struct.unpack("<IQ", f.read(12))
                if at in sizes:
                    f.read(sizes[at] * n)
                else:
                    for _ in range(n):
                        skip(at)
            else:
                raise ValueError("GGUF type %d" % t)

        for _ in range(n_kv):
            k = rstr().decode()
            (t,) = struct.unpack("<I", f.read(4))
            if k == key and t == 8:
                return rstr().decode()
            skip(t)
    raise KeyError(key)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sdist", default=os.path.join(ROOT, ".cache-llamacpp", "llama_cpp_python-0.3.36"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    args = ap.parse_args()
    src = os.path.join(args.sdist, "vendor", "llama.cpp", "models", "templates")
    if not os.path.isdir(src):
        sys.exit("no %s: run scripts/llamacpp_tools.sh first (it unpacks the llama-cpp-python sdist)" % src)
    TEMPLATES.update({f[:-6]: f for f in sorted(os.listdir(src)) if f.endswith(".jinja")})
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):  # a template gone from the sdist goes from the test set
        if f.endswith((".jinja", ".json")):
            os.remove(os.path.join(OUT, f))
    texts = {"smollm2": gguf_string(args.model, "tokenizer.chat_template")}
    for name, fn in TEMPLATES.items():
        shutil.copyfile(os.path.join(src, fn), os.path.join(OUT, name + ".jinja"))
        with open(os.path.join(src, fn), encoding="utf-8") as f:
            texts[name] = f.read()
    with open(os.path.join(OUT, "smollm2.jinja"), "w", encoding="utf-8") as f:
        f.write(texts["smollm2"])
    env = environment()
    for name, text in sorted(texts.items()):
        tpl = env.from_string(text)
        cases = []
        for conv in CONVERSATIONS:
            for agp in (False, True):
                case = {"messages": conv, "add_generation_prompt": agp}
                try:
                    case["output"] = tpl.render(messages=conv, tools=None, documents=None, add_generation_prompt=agp,
                                                **TOKENS)
                except jinja2.exceptions.TemplateError as e:  # raise_exception (and jinja2's own errors)
                    case["error"] = str(e)
                    case["raised"] = type(e) is jinja2.exceptions.TemplateError
                except (TypeError, ValueError, AttributeError, KeyError, IndexError) as e:
                    case["error"] = "%s: %s" % (type(e).__name__, e)
                    case["raised"] = False
                cases.append(case)
        with open(os.path.join(OUT, name + ".json"), "w", encoding="utf-8") as f:
            json.dump({**TOKENS, "now": NOW, "source": TEMPLATES.get(name, "GGUF tokenizer.chat_template of " +
                                                         os.path.basename(args.model)),
                       "cases": cases}, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print("%-26s %d cases, %d errors" % (name, len(cases), sum("error" in c for c in cases)))


if __name__ == "__main__":
    main()
