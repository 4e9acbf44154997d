#!/usr/bin/python3
"""test_cluster.py: the MPI pipeline across separate test hosts (network
namespaces, TCP between them; netns_cluster.py), as deploy/README.md starts
it on several machines.

  /usr/bin/python3 tests/cluster/test_cluster.py [--build build] [--model M] [unittest args]

- 2 and 3 hosts: greedy outputs equal the single-process daemon's for
  autoregressive, early_exit and self_speculative; GetModelInfo names each
  stage's host.
- Faults mid-stream on the worker's host, each: the request gets
  UNAVAILABLE naming stage 1 within --stage-timeout + 2 s, the job (mpirun)
  exits non-zero within 30 s, and no process is left on any host:
  kill -9 of every process there; its link down; its processes stopped.

Needs root and iproute2; not part of scripts/test.sh yet (issue 15, in
progress). Today (2026-12-07) the answers, hosts and the link-down fault
pass (UNAVAILABLE naming stage 1 after 3 s, mpirun exits 1 after 5.4 s,
the cut-off host's orted and worker end a few seconds later). Not yet:
kill -9 of the worker host makes mpirun end the job at once, so the client
sees "Socket closed" instead of the stage; after SIGSTOP of the worker
host the request gets the right UNAVAILABLE in 3 s but mpirun waits for
the stopped orted forever.
"""
import argparse
import os
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ARGS = None
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time"]
CASES = [("autoregressive", 0, 0), ("early_exit", 8, 0), ("self_speculative", 8, 4)]
STAGE_TIMEOUT = 3.0


def stubs():
    sys.path.insert(0, os.path.join(ARGS.build, "proto", "python"))
    sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
    sys.path.insert(0, HERE)
    import grpc
    from layerskip.v1 import layerskip_pb2 as pb, layerskip_pb2_grpc as pbg
    return grpc, pb, pbg


def req(pb, prompt, strategy, e, k, n=16, **kw):
    r = pb.GenerateRequest(prompt=prompt, max_tokens=n, strategy=strategy, **kw)
    if e:
        r.exit_layer = e
    if k:
        r.num_speculations = k
    return r


class TestCluster(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.grpc, cls.pb, cls.pbg = stubs()
        from daemon_harness import Daemon
        d = Daemon(os.path.join(ARGS.build, "daemon", "layerskipd"), ARGS.model, ["--threads", "2"])
        try:
            stub = cls.pbg.LayerSkipStub(d.channel)
            cls.want = {(p, s): stub.Generate(req(cls.pb, p, s, e, k), timeout=120).text
                        for p in PROMPTS for s, e, k in CASES}
        finally:
            d.stop()

    def same_answers(self, n_hosts):
        from netns_cluster import Cluster
        with Cluster(n_hosts) as c:
            d = c.start_pipeline(ARGS.model, ["--exit-layer", "8", "--threads", "1", "--stage-timeout",
                                              str(STAGE_TIMEOUT)], build=ARGS.build)
            stub = self.pbg.LayerSkipStub(d.channel)
            info = stub.GetModelInfo(self.pb.GetModelInfoRequest(), timeout=30)
            self.assertEqual([s.host for s in info.stages], c.hosts)
            for p in PROMPTS:
                for s, e, k in CASES:
                    got = stub.Generate(req(self.pb, p, s, e, k), timeout=120).text
                    self.assertEqual(got, self.want[(p, s)], "%d hosts, %s, %r" % (n_hosts, s, p))
            self.assertEqual(d.stop(), 0, d.log_tail())
            for i in range(n_hosts):
                self.assertEqual(c.pids(i), [], "processes left on host %d" % (i + 1))

    def test_two_hosts(self):
        self.same_answers(2)

    def test_three_hosts(self):
        self.same_answers(3)

    def fault(self, what):
        from netns_cluster import Cluster
        with Cluster(2) as c:
            d = c.start_pipeline(ARGS.model, ["--exit-layer", "8", "--threads", "1", "--stage-timeout",
                                              str(STAGE_TIMEOUT)], build=ARGS.build)
            stub = self.pbg.LayerSkipStub(d.channel)
            it = stub.GenerateStream(req(self.pb, PROMPTS[0], "autoregressive", 0, 0, n=2000, ignore_eos=True),
                                     timeout=120)
            next(it)
            t0 = time.time()
            what(c)
            with self.assertRaises(self.grpc.RpcError) as cm:
                for _ in it:
                    pass
            took = time.time() - t0
            self.assertEqual(cm.exception.code(), self.grpc.StatusCode.UNAVAILABLE, cm.exception.details())
            self.assertIn("stage 1", cm.exception.details())
            self.assertLess(took, STAGE_TIMEOUT + 2)
            try:
                d.proc.wait(timeout=30)
            except Exception:  # noqa: BLE001 - asserted below
                pass
            self.assertIsNotNone(d.proc.poll(), "mpirun still running 30 s after the fault")
            self.assertNotEqual(d.proc.returncode, 0)
            # each host's orted notices the lost peer by TCP keepalive (netns_cluster.KEEPALIVE)
            left = [c.pids(i) for i in range(2)]
            for _ in range(40):
                if not any(left):
                    break
                time.sleep(0.5)
                left = [c.pids(i) for i in range(2)]
            self.assertEqual(left, [[], []], "processes left on the hosts 20 s after the job ended")

    def test_fault_kill_worker_host(self):
        self.fault(lambda c: c.kill_host(1))

    def test_fault_link_down(self):
        self.fault(lambda c: c.link_down(1))

    def test_fault_stopped_host(self):
        self.fault(lambda c: c.stop_host(1))


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
