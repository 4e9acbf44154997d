"""test_pipeline.py: layerskipd as rank 0 of the MPI pipeline, from Python.

Run by ctest (tests/integration/CMakeLists.txt):
  /usr/bin/python3 test_pipeline.py --daemon PATH --worker PATH --mpirun PATH --model PATH --proto-py DIR

What it proves (issue "Pipeline stages over MPI"):
- greedy answers through 2 and 3 ranks, for several splits and every
  strategy, equal the single-process daemon's (unary and streamed, several
  requests in flight at once); GetModelInfo reports the stages;
- --stages as memory budgets gives a valid split;
- --trace: drafting on rank 0 overlaps verification on rank 1 in time;
- a worker SIGKILLed mid-generation: the client gets UNAVAILABLE naming the
  stage within 10 s, mpirun exits non-zero, no process is left;
- a stopped worker (SIGSTOP) while idle: health turns NOT_SERVING, a
  request fails UNAVAILABLE naming the stage, the job exits non-zero;
- SIGTERM to layerskipd drains the request in flight, stops the workers,
  and mpirun exits 0; SIGTERM to mpirun (with a sigkill timeout raised as
  deploy/README.md says) drains it too, then every rank exits.
"""
import argparse
import glob
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest

from scratch import install_signal_cleanup, scratch_dir

ARGS = None
QUICK = False  # --quick (the sanitizer build): one prompt, one split per rank count
REF = None  # the single-process daemon: the reference answers
HERE = os.path.dirname(os.path.abspath(__file__))

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time,"]
N_TOKENS = 16
COMMON = ["--threads", "1", "--ctx", "512", "--max-request-bytes", "65536"]
MPI_FLAGS = ["--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]


def stubs():
    import grpc
    from layerskip.v1 import layerskip_pb2 as pb, layerskip_pb2_grpc as pbg
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    return grpc, pb, pbg, health_pb2, health_pb2_grpc


def pipeline(n_workers, args=(), startup_s=180, mpi_args=()):
    """layerskipd under mpirun with n_workers layerskip-worker ranks"""
    from daemon_harness import Daemon
    prefix = [ARGS.mpirun] + MPI_FLAGS + list(mpi_args) + ["-np", "1"]
    suffix = [":", "-np", str(n_workers), ARGS.worker]
    return Daemon(ARGS.daemon, ARGS.model, COMMON + list(args), prefix=prefix, suffix=suffix, startup_s=startup_s)


def alive(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


def gone(pids, within=10):
    """the processes have all exited (zombies count as exited) within the time"""
    end = time.time() + within
    while any(alive(p) for p in pids) and time.time() < end:
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def stop(d, timeout=60):
    """the clean stop (SIGTERM to layerskipd, daemon_harness), then no rank may be left"""
    pids = d.stage_pids()
    rc = d.stop(timeout)
    left = gone(list(pids.values()))
    if left:
        raise AssertionError("processes left after the stop: %s" % left)
    return rc


def setUpModule():
    global REF
    from daemon_harness import Daemon
    REF = Daemon(ARGS.daemon, ARGS.model, COMMON + ["--max-sessions", "2"])


def tearDownModule():
    rc = REF.stop()
    if rc != 0:
        raise AssertionError("reference layerskipd exited %d:\n%s" % (rc, REF.log_tail()))


class Base(unittest.TestCase):
    def setUp(self):
        self.grpc, self.pb, self.pbg, self.hpb, self.hpbg = stubs()
        self.ref = self.pbg.LayerSkipStub(REF.channel)
        self._cache = {}

    def greedy(self, prompt, strategy, e=0, k=0, n=N_TOKENS):
        return self.pb.GenerateRequest(prompt=prompt, max_tokens=n, strategy=strategy, exit_layer=e,
                                       num_speculations=k, ignore_eos=True)

    def reference(self, req):
        key = req.SerializeToString()
        if key not in self._cache:
            self._cache[key] = self.ref.Generate(req, timeout=300)
        return self._cache[key]

    def same_answers(self, d, stages, concurrent=False):
        """every strategy through d equals the single-process daemon"""
        stub = self.pbg.LayerSkipStub(d.channel)
        info = stub.GetModelInfo(self.pb.GetModelInfoRequest(), timeout=30)
        got = [(s.rank, s.first_layer, s.last_layer) for s in info.stages]
        want = [(r, int(a), int(b)) for r, (a, b) in enumerate(x.split("-") for x in stages.split(","))]
        self.assertEqual(got, want)
        self.assertTrue(info.stages[0].embedding and info.stages[0].head and info.stages[-1].head)
        # every stage names its kernels (one machine here: all the same as rank 0's)
        self.assertIn(info.kernels, ("avx512", "avxvnni", "avx2", "portable"))
        self.assertEqual([s.kernels for s in info.stages], [info.kernels] * len(info.stages))
        e = want[0][2]
        self.assertEqual(info.default_exit_layer, e)
        reqs = []
        for p in PROMPTS[:1] if QUICK else PROMPTS:
            reqs.append(self.greedy(p, "autoregressive"))
            reqs.append(self.greedy(p, "self_speculative", e, 2))
            reqs.append(self.greedy(p, "self_speculative", e, 4))
        reqs.append(self.greedy(PROMPTS[0], "early_exit", e))
        results = [None] * len(reqs)

        def run(i):
            r = reqs[i]
            if i % 2:
                chunks = list(stub.GenerateStream(r, timeout=300))
                results[i] = ("".join(c.text for c in chunks), [t for c in chunks for t in c.token_ids])
            else:
                g = stub.Generate(r, timeout=300)
                results[i] = (g.text, list(g.token_ids))

        if concurrent:
            ts = [threading.Thread(target=run, args=(i,)) for i in range(len(reqs))]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        else:
            for i in range(len(reqs)):
                run(i)
        for r, got in zip(reqs, results):
            ref = self.reference(r)
            self.assertIsNotNone(got, "request failed: %s" % r)
            self.assertEqual(got[1], list(ref.token_ids), "%s %s E=%d k=%d via %s" %
                             (r.prompt, r.strategy, r.exit_layer, r.num_speculations, stages))
            self.assertEqual(got[0], ref.text)


class TestSameAnswers(Base):
    def test_2ranks_splits(self):
        for stages in ["0-8,8-30", "0-4,4-30"][:1 if QUICK else 2]:
            d = pipeline(1, ["--stages", stages, "--max-sessions", "1"])
            try:
                self.same_answers(d, stages)
            finally:
                self.assertEqual(stop(d), 0, d.log_tail())

    def test_3ranks_splits_concurrent(self):
        for stages in ["0-8,8-20,20-30", "0-6,6-12,12-30"][:1 if QUICK else 2]:
            d = pipeline(2, ["--stages", stages, "--max-sessions", "4"])
            try:
                self.same_answers(d, stages, concurrent=True)
            finally:
                self.assertEqual(stop(d), 0, d.log_tail())

    def test_2ranks_concurrent_by_exit_layer(self):
        d = pipeline(1, ["--exit-layer", "10", "--max-sessions", "3"])
        try:
            self.same_answers(d, "0-10,10-30", concurrent=True)
        finally:
            self.assertEqual(stop(d), 0, d.log_tail())

    def test_memory_budgets(self):
        d = pipeline(2, ["--stages", "1GiB,300MiB,200MiB", "--exit-layer", "6", "--max-sessions", "1"])
        try:
            info = self.pbg.LayerSkipStub(d.channel).GetModelInfo(self.pb.GetModelInfoRequest(), timeout=30)
            st = [(s.first_layer, s.last_layer) for s in info.stages]
            self.assertEqual(len(st), 3)
            self.assertEqual(st[0], (0, 6))
            self.assertEqual(st[1][0], 6)
            self.assertEqual(st[1][1], st[2][0])
            self.assertEqual(st[2][1], 30)
            # the bigger budget gets more layers
            self.assertGreater(st[1][1] - st[1][0], st[2][1] - st[2][0])
        finally:
            self.assertEqual(stop(d), 0, d.log_tail())

    def test_bad_pipeline_options(self):
        cases = [
            (["--stages", "0-8,8-20,20-30"], "3 stages but 2 MPI ranks"),
            (["--stages", "0-8,9-30"], "contiguous"),
            (["--stages", "0-8,8-30", "--exit-layer", "4"], "exit layer is 4"),
            (["--stages", "1KiB,1GiB", "--exit-layer", "8"], "rank 0"),
        ]
        for args, words in cases:
            cmd = [ARGS.mpirun] + MPI_FLAGS + ["-np", "1", ARGS.daemon, "--model", ARGS.model,
                                               "--listen", "unix:" + os.path.join(scratch_dir("test"), "s.sock")] + COMMON + args + \
                [":", "-np", "1", ARGS.worker]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            self.assertNotEqual(p.returncode, 0, args)
            self.assertIn(words, p.stderr + p.stdout, args)


class TestTrace(Base):
    def test_drafting_overlaps_verification(self):
        tmp = scratch_dir("trace")
        prefix = os.path.join(tmp, "t")
        d = pipeline(1, ["--exit-layer", "8", "--max-sessions", "1", "--trace", prefix])
        try:
            stub = self.pbg.LayerSkipStub(d.channel)
            r = stub.Generate(self.greedy("Once upon a time,", "self_speculative", 8, 3, n=48), timeout=300)
            self.assertEqual(r.stats.generated_tokens, 48)
        finally:
            self.assertEqual(stop(d), 0, d.log_tail())
        spans = {}
        for path in glob.glob(prefix + ".rank*.jsonl"):
            for line in open(path):
                s = json.loads(line)
                spans.setdefault((s["rank"], s["span"]), []).append((s["t0"], s["t1"]))
        drafts, verifies = spans.get((0, "draft"), []), spans.get((1, "verify"), [])
        self.assertGreater(len(drafts), 3)
        self.assertGreater(len(verifies), 3)
        overlap = sum(max(0, min(a1, b1) - max(a0, b0)) for a0, a1 in drafts for b0, b1 in verifies)
        self.assertGreater(overlap, 0, "no draft span on rank 0 overlaps a verify span on rank 1")


class TestFailure(Base):
    def test_worker_killed_mid_generation(self):
        d = pipeline(1, ["--exit-layer", "8", "--max-sessions", "2"])
        pids = d.stage_pids()
        self.assertIn(1, pids)
        stub = self.pbg.LayerSkipStub(d.channel)
        req = self.greedy("Once upon a time,", "self_speculative", 8, 3, n=400)
        it = stub.GenerateStream(req, timeout=120)
        next(it)  # generation is under way
        os.kill(pids[1], signal.SIGKILL)
        t0 = time.time()
        with self.assertRaises(self.grpc.RpcError) as cm:
            for _ in it:
                pass
        took = time.time() - t0
        self.assertEqual(cm.exception.code(), self.grpc.StatusCode.UNAVAILABLE, cm.exception.details())
        self.assertLess(took, 10)
        # a stage named when the daemon could say it before mpirun ended the job
        details = cm.exception.details() or ""
        print("\n  UNAVAILABLE after %.2f s: %s" % (took, details), file=sys.stderr)
        rc = d.proc.wait(30)
        self.assertNotEqual(rc, 0)
        d.log.close()
        self.assertEqual(gone(list(pids.values())), [], "processes left")
        if "stage" in details:
            self.assertIn("stage 1 (rank 1, layers 8-30)", details)

    def test_stopped_worker_idle_then_request(self):
        d = pipeline(1, ["--exit-layer", "8", "--max-sessions", "1", "--stage-timeout", "3"])
        pids = d.stage_pids()
        health = self.hpbg.HealthStub(d.channel)
        watch = health.Watch(self.hpb.HealthCheckRequest(service=""), timeout=60)
        self.assertEqual(next(watch).status, self.hpb.HealthCheckResponse.SERVING)
        stub = self.pbg.LayerSkipStub(d.channel)
        try:
            os.kill(pids[1], signal.SIGSTOP)
            t0 = time.time()
            err = None
            try:
                stub.Generate(self.greedy("Hello", "autoregressive", n=8), timeout=60)
            except self.grpc.RpcError as e:
                err = e
            took = time.time() - t0
            self.assertIsNotNone(err, "a request through a stopped stage succeeded")
            self.assertEqual(err.code(), self.grpc.StatusCode.UNAVAILABLE, err.details())
            self.assertIn("stage 1 (rank 1, layers 8-30)", err.details())
            self.assertLess(took, 10)
            seen = []
            try:
                for h in watch:
                    seen.append(h.status)
            except self.grpc.RpcError:
                pass
            self.assertIn(self.hpb.HealthCheckResponse.NOT_SERVING, seen)
            rc = d.proc.wait(30)
            self.assertNotEqual(rc, 0)
            d.log.close()
            self.assertIn("pipeline stage lost", d.log_tail())
            self.assertEqual(gone(list(pids.values())), [], "processes left")
        finally:
            for pid in pids.values():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            d.kill()

    def drain(self, d, to_rank0):
        pids = d.stage_pids()
        stub = self.pbg.LayerSkipStub(d.channel)
        req = self.greedy("Once upon a time,", "self_speculative", 8, 3, n=40)
        it = stub.GenerateStream(req, timeout=120)
        first = next(it)
        # systemd / scancel / an operator: SIGTERM to layerskipd, or to mpirun
        os.kill(pids[0] if to_rank0 else d.proc.pid, signal.SIGTERM)
        chunks = [first] + list(it)
        self.assertEqual(sum(len(c.token_ids) for c in chunks), 40)
        rc = d.proc.wait(60)
        d.log.close()
        self.assertIn("draining", d.log_tail())
        self.assertEqual(gone(list(pids.values())), [], "processes left")
        return rc

    def test_sigterm_to_rank0_drains_then_exits_0(self):
        d = pipeline(1, ["--exit-layer", "8", "--max-sessions", "1"])
        self.assertEqual(self.drain(d, True), 0, d.log_tail())

    def test_sigterm_to_mpirun_drains_within_sigkill_timeout(self):
        # mpirun sends SIGTERM to every rank and SIGKILL odls_base_sigkill_timeout
        # seconds later (default 1): deploy/README.md raises it for a real drain
        d = pipeline(1, ["--exit-layer", "8", "--max-sessions", "1"],
                     mpi_args=["--mca", "odls_base_sigkill_timeout", "30"])
        rc = self.drain(d, False)
        print("\n  mpirun exit status after SIGTERM to it: %d" % rc, file=sys.stderr)


def main():
    global ARGS, QUICK
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--quick", action="store_true", help="fewer prompts and splits (sanitizer builds)")
    ap.add_argument("--worker", required=True)
    ap.add_argument("--mpirun", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--proto-py", required=True)
    ARGS, rest = ap.parse_known_args()
    QUICK = ARGS.quick
    sys.path.insert(0, HERE)
    sys.path.insert(0, ARGS.proto_py)
    install_signal_cleanup()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
