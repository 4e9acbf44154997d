"""test_daemon.py: layerskipd against its contract, on loopback, from Python.

Run by ctest (tests/integration/CMakeLists.txt):
  /usr/bin/python3 test_daemon.py --daemon PATH --bench PATH --model PATH --proto-py DIR
Every daemon this starts must exit 0 after SIGTERM (under the ASan+UBSan
build that also means no sanitizer report and no leak).
"""
import argparse
import json
import os
import signal
import subprocess
import tempfile
import sys
import threading
import time
import unittest

from scratch import install_signal_cleanup, scratch_dir

ARGS = None
MAIN = None  # the shared daemon
HERE = os.path.dirname(os.path.abspath(__file__))

# small on purpose: the same file runs against the ASan build
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time,", "1, 2, 3, 4,"]
N_TOKENS = 12


def stubs():
    import grpc
    from layerskip.v1 import layerskip_pb2 as pb, layerskip_pb2_grpc as pbg
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    return grpc, pb, pbg, health_pb2, health_pb2_grpc


def bench_text(prompt, n, strategy="autoregressive", e=None, k=None, extra=()):
    cmd = [ARGS.bench, "--model", ARGS.model, "-p", prompt, "-n", str(n), "--json", "-t", "1",
           "--generation-strategy", strategy] + list(extra)
    if e:
        cmd += ["--exit-layer", str(e)]
    if k:
        cmd += ["--num-speculations", str(k)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600).stdout
    return json.loads(out)


def setUpModule():
    global MAIN
    from daemon_harness import Daemon
    MAIN = Daemon(ARGS.daemon, ARGS.model,
                  ["--threads", "1", "--max-sessions", "2", "--max-queue", "64", "--ctx", "512",
                   "--max-request-bytes", "65536"], metrics=True)


def tearDownModule():
    rc = MAIN.stop()
    if rc != 0:
        raise AssertionError("main layerskipd exited %d:\n%s" % (rc, MAIN.log_tail()))


class Base(unittest.TestCase):
    def setUp(self):
        self.grpc, self.pb, self.pbg, self.hpb, self.hpbg = stubs()
        self.stub = self.pbg.LayerSkipStub(MAIN.channel)

    def req(self, prompt="The capital of France is", **kw):
        return self.pb.GenerateRequest(prompt=prompt, **kw)

    def stream_all(self, req, stub=None, timeout=300):
        chunks = list((stub or self.stub).GenerateStream(req, timeout=timeout))
        return chunks, "".join(c.text for c in chunks), [t for c in chunks for t in c.token_ids]

    def assert_code(self, fn, code, *words):
        with self.assertRaises(self.grpc.RpcError) as cm:
            fn()
        e = cm.exception
        self.assertEqual(e.code(), code, "details: %s" % e.details())
        for w in words:
            self.assertIn(w, e.details())
        return e


class TestSameAnswer(Base):
    def test_every_strategy_unary_stream_bench(self):
        info = self.stub.GetModelInfo(self.pb.GetModelInfoRequest(), timeout=30)
        self.assertIn(info.kernels, ("avx512", "avxvnni", "avx2", "portable"))
        self.assertEqual(info.stages[0].kernels, info.kernels)
        cases = [("autoregressive", None, None), ("early_exit", 8, None),
                 ("self_speculative", 8, 3), ("self_speculative", 20, 5)]
        for strategy, e, k in cases:
            for prompt in PROMPTS[:2]:
                with self.subTest(strategy=strategy, e=e, k=k, prompt=prompt):
                    r = self.req(prompt, max_tokens=N_TOKENS, strategy=strategy, exit_layer=e or 0,
                                 num_speculations=k or 0, ignore_eos=True, request_id="same-1")
                    unary = self.stub.Generate(r, timeout=300)
                    chunks, text, ids = self.stream_all(r)
                    want = bench_text(prompt, N_TOKENS, strategy, e, k)
                    want_text, want_ids = want["text"], want["token_ids"]
                    self.assertEqual(unary.text, want_text)
                    self.assertEqual(list(unary.token_ids), want_ids)
                    self.assertEqual(text, unary.text)
                    self.assertEqual(ids, list(unary.token_ids))
                    self.assertEqual(unary.request_id, "same-1")
                    self.assertTrue(all(c.request_id == "same-1" for c in chunks))
                    last = chunks[-1]
                    self.assertEqual(last.finish_reason, self.pb.FINISH_REASON_LENGTH)
                    self.assertTrue(all(c.finish_reason == 0 for c in chunks[:-1]))
                    for s in (unary.stats, last.stats):
                        self.assertEqual(s.generated_tokens, N_TOKENS)
                        self.assertEqual(s.strategy, strategy)
                        n_prompt = len(self.stub.Tokenize(self.pb.TokenizeRequest(text=prompt), timeout=30).ids)
                        self.assertEqual(s.prompt_tokens, n_prompt)
                        self.assertGreater(s.time_to_first_token_ms, 0)
                        self.assertGreaterEqual(s.total_ms, s.time_to_first_token_ms)
                        self.assertGreater(s.tokens_per_second, 0)
                        self.assertLessEqual(s.accepted, s.drafted)
                        if strategy == "self_speculative":
                            self.assertEqual(s.exit_layer, e)
                            self.assertEqual(s.num_speculations, k)
                            # the same rounds as the engine tool (drafting stops early on unsure
                            # drafts: --draft-min-p 0.95 in both)
                            self.assertEqual((s.drafted, s.accepted, s.rounds),
                                             (want["drafted"], want["accepted"], want["rounds"]))
                            self.assertGreater(s.rounds, 0)
                            if s.drafted:
                                self.assertAlmostEqual(s.acceptance_rate, s.accepted / s.drafted, places=6)
                        else:
                            self.assertEqual(s.drafted, 0)
                            self.assertEqual(s.acceptance_rate, 0)
        self.assertEqual(info.layers, 30)

    def test_defaults_and_prompt_ids(self):
        info = self.stub.GetModelInfo(self.pb.GetModelInfoRequest(), timeout=30)
        self.assertEqual((info.layers, info.hidden_size, info.heads, info.kv_heads, info.vocab_size),
                         (30, 576, 9, 3, 49152))
        self.assertEqual(info.context, 512)
        self.assertEqual(info.default_strategy, "autoregressive")
        self.assertEqual(info.default_exit_layer, 7)  # layers / 4
        self.assertEqual((info.exit_layer_range.min, info.exit_layer_range.max), (1, 29))
        self.assertEqual((info.num_speculations_range.min, info.num_speculations_range.max), (1, 32))
        self.assertEqual(sorted(info.strategies), ["autoregressive", "early_exit", "self_speculative"])
        self.assertEqual(len(info.stages), 1)
        self.assertEqual((info.stages[0].first_layer, info.stages[0].last_layer), (0, 30))
        prompt = PROMPTS[2]
        ids = list(self.stub.Tokenize(self.pb.TokenizeRequest(text=prompt), timeout=30).ids)
        self.assertEqual(self.stub.Detokenize(self.pb.DetokenizeRequest(ids=ids), timeout=30).text, prompt)
        a = self.stub.Generate(self.req(prompt, max_tokens=8), timeout=300)
        b = self.stub.Generate(self.pb.GenerateRequest(prompt_ids=self.pb.TokenIds(ids=ids), max_tokens=8),
                               timeout=300)
        self.assertEqual(a.text, b.text)
        self.assertTrue(a.request_id)  # one is made up when empty

    def test_stop_sequences_and_stop_ids(self):
        full = self.stub.Generate(self.req(PROMPTS[3], max_tokens=N_TOKENS, ignore_eos=True), timeout=300)
        text = full.text
        self.assertGreater(len(text), 6)
        stop = text[3:6]
        cut = text[:text.index(stop)]
        r = self.req(PROMPTS[3], max_tokens=N_TOKENS, ignore_eos=True, stop=[stop, "never-appears"])
        unary = self.stub.Generate(r, timeout=300)
        chunks, streamed, _ = self.stream_all(r)
        self.assertEqual(unary.text, cut)
        self.assertEqual(streamed, cut)
        self.assertEqual(unary.finish_reason, self.pb.FINISH_REASON_STOP)
        self.assertEqual(chunks[-1].finish_reason, self.pb.FINISH_REASON_STOP)
        stop_id = full.token_ids[4]
        r = self.req(PROMPTS[3], max_tokens=N_TOKENS, ignore_eos=True, stop_token_ids=[stop_id])
        g = self.stub.Generate(r, timeout=300)
        first = list(full.token_ids).index(stop_id)
        self.assertEqual(list(g.token_ids), list(full.token_ids[:first]))
        self.assertEqual(g.finish_reason, self.pb.FINISH_REASON_STOP)

    def test_sampling_seeded(self):
        s = self.pb.SamplingParams(temperature=0.8, top_p=0.9, seed=1234)
        a = self.stub.Generate(self.req(max_tokens=10, sampling=s, ignore_eos=True), timeout=300)
        b = self.stub.Generate(self.req(max_tokens=10, sampling=s, ignore_eos=True), timeout=300)
        self.assertEqual(a.text, b.text)
        self.assertEqual(a.stats.seed, 1234)
        c = self.stub.Generate(self.req(max_tokens=10, sampling=self.pb.SamplingParams(temperature=0.8)),
                               timeout=300)
        self.assertNotEqual(c.stats.seed, 0)


SOURCES = ["exit", "adapter", "lookup"]  # Stats.by_source, in this order


class TestDraftOptions(Base):
    """draft_source, draft_vocab and num_speculations -1 (auto): greedy output stays the
    autoregressive one, and the statistics say what drafted and which k the rounds used"""

    def check_draft_stats(self, s, source, auto):
        self.assertEqual(s.strategy, "self_speculative")
        self.assertEqual(s.draft_source, source)
        self.assertEqual(s.num_speculations == -1, auto)
        self.assertEqual([b.source for b in s.by_source], SOURCES)
        by = {b.source: b for b in s.by_source}
        self.assertEqual(sum(b.drafted for b in s.by_source), s.drafted)
        self.assertEqual(sum(b.accepted for b in s.by_source), s.accepted)
        for b in s.by_source:
            self.assertGreaterEqual(b.drafted, b.accepted)
            self.assertGreaterEqual(b.accepted, 0)
        self.assertEqual(sum(s.rounds_by_k), s.rounds)
        if s.rounds_by_k:
            self.assertNotEqual(s.rounds_by_k[-1], 0)  # trimmed after the largest k used
        mean = sum(k * n for k, n in enumerate(s.rounds_by_k)) / s.rounds if s.rounds else 0
        self.assertAlmostEqual(s.mean_k, mean, places=9)
        return by

    def test_lookup_and_auto_match_autoregressive(self):
        info = self.stub.GetModelInfo(self.pb.GetModelInfoRequest(), timeout=30)
        self.assertEqual(info.default_draft_source, "auto")
        self.assertEqual(list(info.draft_sources), ["auto"] + SOURCES)
        self.assertEqual((info.default_draft_vocab, info.draft_adapter, info.draft_vocab_max,
                          info.draft_adapter_exit_layer), (0, "", 0, 0))
        self.assertEqual(info.auto_speculations_max, 8)
        self.assertEqual(info.default_num_speculations, 4)
        for prompt in [PROMPTS[0], PROMPTS[3], "1, 2, 3, 4, 1, 2, 3, 4, 1, 2,"]:
            ar = self.stub.Generate(self.req(prompt, max_tokens=N_TOKENS, ignore_eos=True), timeout=300)
            for source, k in (("lookup", 4), ("lookup", -1), ("exit", -1), ("auto", -1), ("auto", 3)):
                with self.subTest(prompt=prompt, source=source, k=k):
                    r = self.req(prompt, max_tokens=N_TOKENS, ignore_eos=True, strategy="self_speculative",
                                 exit_layer=8, num_speculations=k, draft_source=source)
                    g = self.stub.Generate(r, timeout=300)
                    self.assertEqual(list(g.token_ids), list(ar.token_ids))
                    self.assertEqual(g.text, ar.text)
                    chunks, text, ids = self.stream_all(r)
                    self.assertEqual(ids, list(ar.token_ids))
                    for s in (g.stats, chunks[-1].stats):
                        by = self.check_draft_stats(s, source, k == -1)
                        self.assertEqual(s.draft_vocab, 0)
                        self.assertGreaterEqual(by["lookup"].drafted, 0)
                        self.assertEqual(by["adapter"].drafted, 0)  # none loaded
                        if source == "lookup":
                            self.assertEqual(by["exit"].drafted, 0)
                        if source == "exit":
                            self.assertEqual(by["lookup"].drafted, 0)
                        if k == -1:
                            self.assertLessEqual(len(s.rounds_by_k), 9)  # k in [0, 8]
                        else:
                            self.assertLessEqual(len(s.rounds_by_k), k + 1)
                    if k > 0 and source == "lookup":
                        # lookup drafting with a fixed k is deterministic: the engine tool's rounds
                        want = bench_text(prompt, N_TOKENS, "self_speculative", 8, k,
                                          ["--draft-source", source, "--ignore-eos"])
                        self.assertEqual(want["token_ids"], list(g.token_ids))
                        self.assertEqual((g.stats.drafted, g.stats.accepted, g.stats.rounds),
                                         (want["drafted"], want["accepted"], want["rounds"]))
                        self.assertEqual(g.stats.by_source[2].drafted, want["drafted_by"]["lookup"])
                        self.assertEqual(list(g.stats.rounds_by_k), want["rounds_by_k"])
        # the other strategies carry no drafting statistics
        g = self.stub.Generate(self.req(max_tokens=3, draft_source="lookup", num_speculations=-1), timeout=300)
        self.assertEqual((g.stats.draft_source, len(g.stats.by_source), len(g.stats.rounds_by_k)), ("", 0, 0))

    def test_bad_draft_fields(self):
        IA = self.grpc.StatusCode.INVALID_ARGUMENT
        gen = lambda **kw: (lambda: self.stub.Generate(self.req(strategy="self_speculative", max_tokens=2, **kw),
                                                       timeout=60))
        self.assert_code(gen(draft_source="kangaroo"), IA, "draft_source", "lookup")
        # no adapter loaded: the engine's messages
        self.assert_code(gen(draft_source="adapter"), IA, "adapter", "--draft-adapter")
        self.assert_code(gen(draft_vocab=5), IA, "draft_vocab")
        self.assert_code(gen(draft_vocab=-1), IA, "draft_vocab")
        self.assert_code(gen(num_speculations=-2), IA, "num_speculations", "auto")
        self.assert_code(lambda: list(self.stub.GenerateStream(self.req(strategy="self_speculative", draft_vocab=7),
                                                               timeout=60)), IA, "draft_vocab")
        # explicitly the full head is fine
        self.assertTrue(gen(draft_vocab=0)().token_ids)


class TestBadRequests(Base):
    def test_invalid_argument_names_the_field(self):
        IA = self.grpc.StatusCode.INVALID_ARGUMENT
        gen = lambda **kw: (lambda: self.stub.Generate(self.pb.GenerateRequest(**kw), timeout=60))
        self.assert_code(gen(prompt=""), IA, "prompt")
        self.assert_code(gen(), IA, "prompt")
        self.assert_code(gen(prompt_ids=self.pb.TokenIds(ids=[])), IA, "prompt")
        self.assert_code(gen(prompt_ids=self.pb.TokenIds(ids=[1, 10 ** 6])), IA, "prompt_ids")
        self.assert_code(gen(prompt="hello " * 700), IA, "prompt", "512")
        self.assert_code(gen(prompt="hi", max_tokens=-1), IA, "max_tokens")
        self.assert_code(gen(prompt="hi", max_tokens=100000), IA, "max_tokens")
        self.assert_code(gen(prompt="hi", strategy="fastest"), IA, "strategy", "self_speculative")
        self.assert_code(gen(prompt="hi", strategy="self_speculative", exit_layer=30), IA, "exit_layer")
        self.assert_code(gen(prompt="hi", strategy="self_speculative", exit_layer=-2), IA, "exit_layer")
        self.assert_code(gen(prompt="hi", strategy="self_speculative", num_speculations=33), IA, "num_speculations")
        self.assert_code(gen(prompt="hi", sampling=self.pb.SamplingParams(temperature=-1)), IA, "temperature")
        self.assert_code(gen(prompt="hi", sampling=self.pb.SamplingParams(top_p=1.5)), IA, "top_p")
        # larger than --max-request-bytes 65536
        self.assert_code(gen(prompt="x" * 100000), IA, "bytes")
        # the same checks on the streaming method
        self.assert_code(lambda: list(self.stub.GenerateStream(self.pb.GenerateRequest(prompt="hi", max_tokens=-5),
                                                               timeout=60)), IA, "max_tokens")
        # raw bytes: invalid UTF-8 in the prompt (field 2), and bytes that are no protobuf at all
        raw = MAIN.channel.unary_unary("/layerskip.v1.LayerSkip/Generate")
        self.assert_code(lambda: raw(b"\x12\x02\xff\xfe", timeout=60), IA, "UTF-8")
        self.assert_code(lambda: raw(b"\xff\xff\xff\xff\xff", timeout=60), IA)
        rawt = MAIN.channel.unary_unary("/layerskip.v1.LayerSkip/Tokenize")
        self.assert_code(lambda: rawt(b"\x0a\x01\xc3", timeout=60), IA, "UTF-8")
        # still serving
        self.assertTrue(self.stub.Generate(self.req(max_tokens=2), timeout=300).text)

    def test_unknown_method_unimplemented(self):
        raw = MAIN.channel.unary_unary("/layerskip.v1.LayerSkip/NoSuchMethod")
        self.assert_code(lambda: raw(b"", timeout=30), self.grpc.StatusCode.UNIMPLEMENTED)

    def test_health_and_reflection(self):
        h = self.hpbg.HealthStub(MAIN.channel)
        S = self.hpb.HealthCheckResponse
        self.assertEqual(h.Check(self.hpb.HealthCheckRequest(service=""), timeout=10).status, S.SERVING)
        self.assertEqual(h.Check(self.hpb.HealthCheckRequest(service="layerskip.v1.LayerSkip"), timeout=10).status,
                         S.SERVING)
        self.assert_code(lambda: h.Check(self.hpb.HealthCheckRequest(service="nope"), timeout=10),
                         self.grpc.StatusCode.NOT_FOUND)
        w = h.Watch(self.hpb.HealthCheckRequest(service=""), timeout=10)
        self.assertEqual(next(w).status, S.SERVING)
        w.cancel()
        for path in ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                     "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"):
            rs = MAIN.channel.stream_stream(path)
            # ServerReflectionRequest{list_services: "*"} (field 7)
            replies = list(rs(iter([b"\x3a\x01*"]), timeout=10))
            self.assertEqual(len(replies), 1)
            self.assertIn(b"layerskip.v1.LayerSkip", replies[0])
            self.assertIn(b"grpc.health.v1.Health", replies[0])


class TestCancellation(Base):
    def busy(self):
        return MAIN.metric("layerskip_sessions_busy")

    def long_req(self, **kw):
        return self.req("Write a long story about a dragon.", max_tokens=400, ignore_eos=True, **kw)

    def test_cancel_mid_stream_frees_slot(self):
        before = MAIN.metric("layerskip_requests_total", {"method": "GenerateStream", "code": "CANCELLED"})
        it = self.stub.GenerateStream(self.long_req(), timeout=300)
        got = [next(it) for _ in range(3)]
        self.assertTrue(all(c.text or c.token_ids for c in got))
        self.assertEqual(self.busy(), 1)
        t0 = time.time()
        it.cancel()
        self.assertEqual(MAIN.wait_metric("layerskip_sessions_busy", lambda v: v == 0), 0)
        self.assertLess(time.time() - t0, 5)
        after = MAIN.wait_metric("layerskip_requests_total", lambda v: v > before,
                                 labels={"method": "GenerateStream", "code": "CANCELLED"})
        self.assertEqual(after, before + 1)
        self.assertTrue(self.stub.Generate(self.req(max_tokens=2), timeout=300).text)

    def test_deadline_frees_slot(self):
        t0 = time.time()
        self.assert_code(lambda: self.stub.Generate(self.long_req(), timeout=1.0),
                         self.grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertLess(time.time() - t0, 5)
        self.assertEqual(MAIN.wait_metric("layerskip_sessions_busy", lambda v: v == 0), 0)
        self.assertTrue(self.stub.Generate(self.req(max_tokens=2), timeout=300).text)

    def test_client_killed_frees_slot(self):
        code = ("import sys; sys.path.insert(0, %r)\n"
                "import grpc\nfrom layerskip.v1 import layerskip_pb2 as pb, layerskip_pb2_grpc as pbg\n"
                "s = pbg.LayerSkipStub(grpc.insecure_channel(%r))\n"
                "it = s.GenerateStream(pb.GenerateRequest(prompt='Tell me a story', max_tokens=400, ignore_eos=True))\n"
                "next(it); print('streaming', flush=True)\n"
                "import time; time.sleep(600)\n") % (ARGS.proto_py, MAIN.addr)
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            self.assertEqual(p.stdout.readline().strip(), "streaming")
            self.assertEqual(self.busy(), 1)
            p.kill()
            p.wait()
            self.assertEqual(MAIN.wait_metric("layerskip_sessions_busy", lambda v: v == 0), 0)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
        self.assertTrue(self.stub.Generate(self.req(max_tokens=2), timeout=300).text)

    def test_32_concurrent_streams(self):
        want = {}
        for p in PROMPTS:
            want[p] = self.stub.Generate(self.req(p, max_tokens=6, ignore_eos=True), timeout=300).text
        results, errors = {}, []

        def one(i):
            p = PROMPTS[i % len(PROMPTS)]
            try:
                _, text, _ = self.stream_all(self.req(p, max_tokens=6, ignore_eos=True, request_id="c%d" % i),
                                             timeout=900)
                results[i] = (p, text)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append((i, repr(e)))
        threads = [threading.Thread(target=one, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        peak = 0
        while any(t.is_alive() for t in threads):
            peak = max(peak, MAIN.metric("layerskip_queue_depth"))
            time.sleep(0.05)
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 32)
        for i, (p, text) in results.items():
            self.assertEqual(text, want[p], "stream %d" % i)
        self.assertGreater(peak, 0)  # 2 sessions: the others queued
        self.assertEqual(MAIN.metric("layerskip_sessions_busy"), 0)
        self.assertEqual(MAIN.metric("layerskip_queue_depth"), 0)


class TestChat(Base):
    SYS = {"role": "system", "content": "You are a helpful assistant."}
    Q = {"role": "user", "content": "What is the capital of France?"}

    def chat_req(self, messages, **kw):
        return self.pb.ChatRequest(messages=[self.pb.ChatMessage(**m) for m in messages],
                                   options=self.pb.GenerateRequest(**kw))

    def test_chat_equals_generate_on_the_rendered_prompt(self):
        msgs = [self.SYS, self.Q]
        info = self.stub.GetModelInfo(self.pb.GetModelInfoRequest(), timeout=30)
        self.assertEqual(info.chat_template, "model")
        r = self.stub.Chat(self.chat_req(msgs, max_tokens=24), timeout=300)
        self.assertEqual(r.text, "The capital of France is Paris.")
        self.assertEqual(r.finish_reason, self.pb.FINISH_REASON_EOS)  # ends at the end-of-turn token
        # the same text streamed, and with every strategy (lossless)
        for strategy in ("autoregressive", "self_speculative", "early_exit"):
            chunks = list(self.stub.ChatStream(self.chat_req(msgs, max_tokens=24, strategy=strategy, exit_layer=8),
                                               timeout=300))
            text = "".join(c.text for c in chunks)
            if strategy != "early_exit":
                self.assertEqual(text, r.text, strategy)
            self.assertEqual(chunks[-1].stats.strategy, strategy)
        # Chat is Generate on the template's rendering (ChatML with special tokens parsed; the renderer itself
        # is checked against jinja2 by test_chat_template)
        prompt = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                  "What is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
        g = self.stub.Generate(self.req(prompt, max_tokens=24), timeout=300)
        self.assertEqual(g.text, r.text)
        self.assertEqual(list(g.token_ids), list(r.token_ids))
        self.assertEqual(g.stats.prompt_tokens, r.stats.prompt_tokens)

    def test_multi_turn(self):
        msgs = [self.SYS, self.Q, {"role": "assistant", "content": "The capital of France is Paris."},
                {"role": "user", "content": "And of Italy?"}]
        r = self.stub.Chat(self.chat_req(msgs, max_tokens=24), timeout=300)
        self.assertIn("Rome", r.text)

    def test_bad_chat_requests(self):
        A = self.grpc.StatusCode.INVALID_ARGUMENT
        self.assert_code(lambda: self.stub.Chat(self.chat_req([]), timeout=30), A, "messages is empty")
        self.assert_code(lambda: self.stub.Chat(self.chat_req([{"role": "", "content": "x"}]), timeout=30), A,
                         "messages[0].role")
        self.assert_code(lambda: self.stub.Chat(self.chat_req([self.Q], prompt="x"), timeout=30), A,
                         "options.prompt")
        self.assert_code(lambda: self.stub.Chat(self.chat_req([self.Q] * 1025), timeout=30), A, "1024")
        self.assert_code(lambda: self.stub.Chat(self.chat_req([self.Q], max_tokens=-3), timeout=30), A,
                         "max_tokens")

    def test_chat_template_flag(self):
        from daemon_harness import Daemon
        tmp = tempfile.mkdtemp(prefix="ls-chat-")
        tpl = os.path.join(tmp, "t.jinja")
        with open(tpl, "w") as f:
            f.write("{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system role') }}"
                    "{% endif %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
        d = Daemon(ARGS.daemon, ARGS.model, ["--threads", "1", "--chat-template", tpl])
        try:
            stub = self.pbg.LayerSkipStub(d.channel)
            self.assertEqual(stub.GetModelInfo(self.pb.GetModelInfoRequest(), timeout=30).chat_template, tpl)
            r = stub.Chat(self.chat_req([self.Q], max_tokens=24), timeout=300)
            self.assertEqual(r.text, "The capital of France is Paris.")
            self.assert_code(lambda: stub.Chat(self.chat_req([self.SYS, self.Q]), timeout=30),
                             self.grpc.StatusCode.INVALID_ARGUMENT, "refuses this conversation: no system role")
        finally:
            self.assertEqual(d.stop(), 0)
        # a template outside the subset, or a missing file: startup fails naming it
        with open(tpl, "w") as f:
            f.write("line 1\n{% include 'other.jinja' %}")
        r = subprocess.run([ARGS.daemon, "--model", ARGS.model, "--listen", "127.0.0.1:0", "--chat-template", tpl],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 2)
        self.assertIn("line 2: {% include %} is not supported", r.stderr)
        r = subprocess.run([ARGS.daemon, "--model", ARGS.model, "--listen", "127.0.0.1:0", "--chat-template",
                            os.path.join(tmp, "missing.jinja")], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 2)
        self.assertIn("missing.jinja", r.stderr)


class TestMetrics(Base):
    def test_prometheus_text(self):
        self.stub.Generate(self.req(max_tokens=3), timeout=300)
        text = MAIN.metrics()
        for name in ("layerskip_requests_total", "layerskip_request_duration_seconds_bucket",
                     "layerskip_generated_tokens_total", "layerskip_prompt_tokens_total",
                     "layerskip_drafted_tokens_total", "layerskip_accepted_tokens_total",
                     "layerskip_time_to_first_token_seconds_bucket", "layerskip_queue_depth",
                     "layerskip_sessions_busy", "layerskip_sessions_max", "layerskip_acceptance_ratio"):
            self.assertIn(name, text)
        self.assertEqual(MAIN.metric("layerskip_sessions_max"), 2)
        self.assertGreaterEqual(MAIN.metric("layerskip_requests_total", {"method": "Generate", "code": "OK"}), 1)
        self.assertGreaterEqual(MAIN.metric("layerskip_generated_tokens_total"), 3)


class TestOtherDaemons(Base):
    def test_queue_overflow_resource_exhausted(self):
        from daemon_harness import Daemon
        d = Daemon(ARGS.daemon, ARGS.model, ["--threads", "1", "--max-sessions", "1", "--max-queue", "1",
                                             "--ctx", "512"], metrics=True)
        try:
            stub = self.pbg.LayerSkipStub(d.channel)
            long = self.req("Tell me a story", max_tokens=400, ignore_eos=True)
            a = stub.GenerateStream(long, timeout=300)
            next(a)  # running: the one session is busy
            b = stub.GenerateStream(long, timeout=300)
            self.assertEqual(d.wait_metric("layerskip_queue_depth", lambda v: v == 1), 1)  # b waits
            t0 = time.time()
            e = self.assert_code(lambda: stub.Generate(long, timeout=60), self.grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertLess(time.time() - t0, 5)
            self.assertIn("queue", e.details())
            a.cancel()
            self.assertTrue(next(b).token_ids)  # the queued one runs once the slot is free
            b.cancel()
            self.assertEqual(d.wait_metric("layerskip_sessions_busy", lambda v: v == 0), 0)
            self.assertEqual(d.metric("layerskip_queue_depth"), 0)
        finally:
            self.assertEqual(d.stop(), 0, d.log_tail())

    def test_long_prompt_deadline_and_kv_budget(self):
        """A deadline during a long prompt ends it within a step or two (the
        prompt runs in --prefill-chunk slices); with --kv-budget one context,
        a request that does not fit next to a running one waits in the queue
        with a session free, then runs; KV use shows in the metrics."""
        from daemon_harness import Daemon
        d = Daemon(ARGS.daemon, ARGS.model, ["--threads", "1", "--max-sessions", "2", "--ctx", "4096",
                                             "--kv-budget", "4096", "--prefill-chunk", "32"], metrics=True)
        try:
            stub = self.pbg.LayerSkipStub(d.channel)
            text = " ".join("word%d" % (i % 50) for i in range(1300))
            n = len(stub.Tokenize(self.pb.TokenizeRequest(text=text), timeout=60).ids)
            self.assertGreater(n, 3000)
            self.assertLess(n, 4000)
            t0 = time.time()
            self.assert_code(lambda: stub.Generate(self.req(text, max_tokens=1), timeout=0.5),
                             self.grpc.StatusCode.DEADLINE_EXCEEDED)
            self.assertEqual(d.wait_metric("layerskip_sessions_busy", lambda v: v == 0), 0)
            freed = time.time() - t0
            self.assertLess(freed, 4.0, "the prompt of %d tokens was not interrupted" % n)
            self.assertEqual(d.metric("layerskip_kv_reserved_tokens"), 0)
            self.assertEqual(d.metric("layerskip_kv_budget_tokens"), 4096)

            # the first request reserves its prompt + max_tokens + 1 = all but one
            # of the 4096 positions; the second (about 10) cannot fit beside it
            np = len(stub.Tokenize(self.pb.TokenizeRequest(text="Tell me a story"), timeout=60).ids)
            big = self.req("Tell me a story", max_tokens=4096 - np - 2, ignore_eos=True)
            a = stub.GenerateStream(big, timeout=300)
            next(a)  # running, holding the budget
            self.assertEqual(d.metric("layerskip_kv_reserved_tokens"), 4095)
            small = self.req(max_tokens=3, ignore_eos=True)
            fut = stub.Generate.future(small, timeout=300)
            self.assertEqual(d.wait_metric("layerskip_queue_depth", lambda v: v == 1), 1)  # waits, a session free
            self.assertEqual(d.metric("layerskip_sessions_busy"), 1)
            a.cancel()
            self.assertEqual(len(fut.result().token_ids), 3)  # then runs
            self.assertEqual(d.wait_metric("layerskip_sessions_busy", lambda v: v == 0), 0)
            self.assertEqual(d.metric("layerskip_kv_reserved_tokens"), 0)
            self.assertEqual(d.metric("layerskip_kv_reserved_bytes"), 0)
        finally:
            self.assertEqual(d.stop(), 0, d.log_tail())

    def test_auth_and_tls(self):
        from daemon_harness import Daemon
        tmp = scratch_dir("tls")
        key, crt = os.path.join(tmp, "key.pem"), os.path.join(tmp, "cert.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                        "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                       check=True, capture_output=True)
        token_file = os.path.join(tmp, "token")
        with open(token_file, "w") as f:
            f.write("s3cret-token\n")
        d = Daemon(ARGS.daemon, ARGS.model, ["--threads", "1", "--max-sessions", "1", "--ctx", "256",
                                             "--tls-cert", crt, "--tls-key", key, "--auth-token-file", token_file])
        grpc = self.grpc
        try:
            with open(crt, "rb") as f:
                creds = grpc.ssl_channel_credentials(root_certificates=f.read())
            ch = grpc.secure_channel(d.addr, creds, options=[("grpc.ssl_target_name_override", "localhost")])
            grpc.channel_ready_future(ch).result(timeout=120)
            hs = self.hpbg.HealthStub(ch)
            end = time.time() + 120
            while hs.Check(self.hpb.HealthCheckRequest(), timeout=10).status != self.hpb.HealthCheckResponse.SERVING:
                self.assertLess(time.time(), end)
                time.sleep(0.1)
            stub = self.pbg.LayerSkipStub(ch)
            ok = stub.Generate(self.req(max_tokens=3), timeout=120,
                               metadata=[("authorization", "Bearer s3cret-token")])
            self.assertEqual(ok.stats.generated_tokens, 3)
            U = grpc.StatusCode.UNAUTHENTICATED
            self.assert_code(lambda: stub.Generate(self.req(max_tokens=3), timeout=30), U)
            self.assert_code(lambda: stub.Generate(self.req(max_tokens=3), timeout=30,
                                                   metadata=[("authorization", "Bearer wrong")]), U)
            self.assert_code(lambda: stub.GetModelInfo(self.pb.GetModelInfoRequest(), timeout=30,
                                                       metadata=[("authorization", "s3cret-token")]), U)
            self.assert_code(lambda: list(stub.GenerateStream(self.req(max_tokens=3), timeout=30)), U)
            # plaintext against the TLS port fails
            plain = self.pbg.LayerSkipStub(grpc.insecure_channel(d.addr))
            self.assert_code(lambda: plain.Generate(self.req(max_tokens=3), timeout=5,
                                                    metadata=[("authorization", "Bearer s3cret-token")]),
                             grpc.StatusCode.UNAVAILABLE)
            ch.close()
        finally:
            self.assertEqual(d.stop(), 0, d.log_tail())

    def test_sigterm_drains_in_flight(self):
        from daemon_harness import Daemon
        d = Daemon(ARGS.daemon, ARGS.model, ["--threads", "1", "--max-sessions", "1", "--ctx", "256",
                                             "--drain-seconds", "60"])
        stub = self.pbg.LayerSkipStub(d.channel)
        it = stub.GenerateStream(self.req(max_tokens=24, ignore_eos=True), timeout=300)
        first = next(it)
        d.proc.send_signal(signal.SIGTERM)
        rest = list(it)  # the in-flight stream completes
        chunks = [first] + rest
        self.assertEqual(chunks[-1].finish_reason, self.pb.FINISH_REASON_LENGTH)
        self.assertEqual(chunks[-1].stats.generated_tokens, 24)
        d.proc.wait(60)
        self.assertEqual(d.proc.returncode, 0, d.log_tail())
        self.assertEqual(d.stop(), 0)

    def test_draft_adapter_daemon(self):
        """--draft-adapter (a frequency table trained after layer 12) with --draft-vocab,
        --draft-source and --num-speculations auto as the daemon's defaults"""
        from daemon_harness import Daemon
        from table_adapter import write_table_adapter
        path = os.path.join(scratch_dir("adapter"), "table.E12.gguf")
        write_table_adapter(ARGS.model, path, 12, 1000)
        d = Daemon(ARGS.daemon, ARGS.model, ["--threads", "1", "--max-sessions", "1", "--ctx", "256",
                                             "--draft-adapter", path, "--draft-vocab", "500", "--draft-source", "exit",
                                             "--num-speculations", "auto", "--strategy", "self_speculative"])
        try:
            stub = self.pbg.LayerSkipStub(d.channel)
            info = stub.GetModelInfo(self.pb.GetModelInfoRequest(), timeout=30)
            self.assertEqual((info.draft_adapter, info.draft_adapter_exit_layer, info.draft_vocab_max), (path, 12, 1000))
            self.assertEqual(info.default_exit_layer, 12)  # the adapter's E
            self.assertEqual((info.default_draft_vocab, info.default_draft_source, info.default_num_speculations),
                             (500, "exit", -1))
            ar = self.stub.Generate(self.req(PROMPTS[1], max_tokens=N_TOKENS, ignore_eos=True), timeout=300)
            g = stub.Generate(self.req(PROMPTS[1], max_tokens=N_TOKENS, ignore_eos=True), timeout=300)
            self.assertEqual(list(g.token_ids), list(ar.token_ids))
            s = g.stats
            self.assertEqual((s.strategy, s.exit_layer, s.num_speculations, s.draft_source, s.draft_vocab),
                             ("self_speculative", 12, -1, "exit", 500))
            self.assertEqual(sum(s.rounds_by_k), s.rounds)
            g = stub.Generate(self.req(PROMPTS[1], max_tokens=N_TOKENS, ignore_eos=True, draft_vocab=0,
                                       num_speculations=2), timeout=300)
            self.assertEqual(list(g.token_ids), list(ar.token_ids))
            self.assertEqual((g.stats.draft_vocab, g.stats.num_speculations), (0, 2))
            self.assertLessEqual(len(g.stats.rounds_by_k), 3)
            IA = self.grpc.StatusCode.INVALID_ARGUMENT
            self.assert_code(lambda: stub.Generate(self.req(draft_vocab=1001, max_tokens=2), timeout=60), IA,
                             "draft_vocab 1001 is out of range [1, 1000]")
            self.assert_code(lambda: stub.Generate(self.req(draft_source="adapter", max_tokens=2), timeout=60), IA,
                             "frequency table")
        finally:
            self.assertEqual(d.stop(), 0, d.log_tail())

    def test_startup_errors(self):
        def run(*args):
            return subprocess.run([ARGS.daemon] + list(args), capture_output=True, text=True, timeout=120)
        r = run("--model", "/nonexistent/model.gguf", "--listen", "127.0.0.1:0")
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent/model.gguf", r.stderr)
        r = run("--model", ARGS.model, "--no-such-flag")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--no-such-flag", r.stderr)
        r = run("--model", ARGS.model, "--max-sessions", "0")
        self.assertEqual(r.returncode, 2)
        self.assertIn("max-sessions", r.stderr)
        # the draft options: the adapter file is loaded at startup, the engine checks the defaults
        r = run("--model", ARGS.model, "--listen", "127.0.0.1:0", "--draft-adapter", "/nonexistent/a.gguf")
        self.assertEqual(r.returncode, 1)
        self.assertIn("--draft-adapter", r.stderr)
        self.assertIn("/nonexistent/a.gguf", r.stderr)
        r = run("--model", ARGS.model, "--listen", "127.0.0.1:0", "--draft-adapter", ARGS.model)
        self.assertEqual(r.returncode, 1)
        self.assertIn("not a draft adapter", r.stderr)
        r = run("--model", ARGS.model, "--draft-source", "kangaroo")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--draft-source", r.stderr)
        r = run("--model", ARGS.model, "--listen", "127.0.0.1:0", "--draft-vocab", "5")
        self.assertEqual(r.returncode, 2)
        self.assertIn("draft_vocab 5", r.stderr)
        r = run("--model", ARGS.model, "--listen", "127.0.0.1:0", "--draft-source", "adapter")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--draft-adapter", r.stderr)
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        for flag in ("--model", "--listen", "--threads", "--ctx", "--max-sessions", "--max-queue", "--tls-cert",
                     "--tls-key", "--auth-token-file", "--metrics-listen", "--config", "--log-level",
                     "--strategy", "--exit-layer", "--num-speculations", "--draft-source", "--draft-adapter",
                     "--draft-vocab"):
            self.assertIn(flag, r.stdout)
        # port already taken by the main daemon
        r = run("--model", ARGS.model, "--listen", MAIN.addr)
        self.assertEqual(r.returncode, 1)
        self.assertIn(MAIN.addr, r.stderr)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--proto-py", required=True)
    ARGS, rest = ap.parse_known_args()
    sys.path.insert(0, HERE)
    sys.path.insert(0, ARGS.proto_py)
    install_signal_cleanup()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
