#!/usr/bin/python3
"""test_cluster.py: the MPI pipeline across separate test hosts (network
namespaces, TCP between them; netns_cluster.py), as deploy/README.md starts
it on several machines.

  /usr/bin/python3 tests/cluster/test_cluster.py [--build build] [--model M]
      [--fault-runs N] [--soak-minutes M] [unittest args]

- 2 and 3 hosts: greedy outputs equal the single-process daemon's for
  autoregressive, early_exit and self_speculative; GetModelInfo names each
  stage's host; the job ends with status 0 and nothing left on any host.
- Faults mid-stream on the worker's host (one session, so a second request
  waits in the queue): kill -9 of every process there; its link down; its
  packets dropped (links up, no reset); its processes stopped (SIGSTOP).
  Each: the running and the queued request get UNAVAILABLE naming stage 1,
  and health leaves SERVING, within --stage-timeout + 2 s; mpirun exits
  non-zero within 30 s; no process is left on any host (a stopped host is
  resumed first: its processes cannot end while frozen). --fault-runs N
  repeats each fault N times and prints the median times (BENCHMARKS.md).
- `layerskip batch` through the cluster, interrupted by a fault and rerun
  against a restarted job: every id once, each equal to the single-process
  answer.
- Wrong setups fail fast, saying why: a hostfile host that does not answer,
  a worker with a different model file, a --stages split over budget.
- --soak-minutes M (0: reported as skipped): M minutes of 8 streams over 3
  hosts; every rank's RSS flat within 5% after warm-up, no errors, the
  daemon's request counter equal to the client's.

Needs root and iproute2 (scripts/test.sh runs it as its cluster stage).
"""
import argparse
import atexit
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

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

    def fault(self, kind):
        from netns_cluster import Cluster
        hs, hpbg = health_stubs()
        with Cluster(2) as c:
            d = c.start_pipeline(ARGS.model, ["--exit-layer", "8", "--threads", "1", "--max-sessions", "1",
                                              "--stage-timeout", str(STAGE_TIMEOUT)], build=ARGS.build)
            stub = self.pbg.LayerSkipStub(d.channel)
            health = hpbg.HealthStub(d.channel)
            got = {}

            def run(name, call):
                try:
                    for _ in call:
                        pass
                    got[name] = ("OK", "", time.time())
                except self.grpc.RpcError as e:  # noqa: PERF203 - one per call
                    got[name] = (e.code(), e.details(), time.time())

            running = stub.GenerateStream(req(self.pb, PROMPTS[0], "autoregressive", 0, 0, n=2000, ignore_eos=True),
                                          timeout=120)
            next(running)
            queued = stub.GenerateStream(req(self.pb, PROMPTS[1], "autoregressive", 0, 0, n=16), timeout=120)
            threads = [threading.Thread(target=run, args=("running", running)),
                       threading.Thread(target=run, args=("queued", queued))]
            for t in threads:
                t.start()
            time.sleep(0.3)  # the second request is in the queue (one session)
            self.assertNotIn("queued", got, "the queued request ended before the fault")
            left_serving = []

            def watch():
                while not left_serving:
                    try:
                        r = health.Check(hs.HealthCheckRequest(service=""), timeout=1)
                        if r.status != hs.HealthCheckResponse.SERVING:
                            left_serving.append(("NOT_SERVING", time.time()))
                    except self.grpc.RpcError as e:
                        left_serving.append((e.code().name, time.time()))
                    time.sleep(0.05)

            w = threading.Thread(target=watch)
            w.start()
            t0 = time.time()
            {"kill": lambda: c.kill_host(1), "link_down": lambda: c.link_down(1), "drop": lambda: c.drop(1),
             "stop": lambda: c.stop_host(1)}[kind]()
            for t in threads:
                t.join(30)
            w.join(30)
            bound = STAGE_TIMEOUT + 2
            for name in ("running", "queued"):
                self.assertIn(name, got, "%s: no answer 30 s after the fault" % name)
                code, details, when = got[name]
                self.assertEqual(code, self.grpc.StatusCode.UNAVAILABLE, "%s: %s %s" % (name, code, details))
                self.assertIn("stage 1", details, name)
                self.assertLess(when - t0, bound, "%s answered after %.1f s: %s" % (name, when - t0, details))
            self.assertTrue(left_serving, "health never left SERVING")
            self.assertLess(left_serving[0][1] - t0, bound, "health still SERVING %.1f s after the fault" %
                            (left_serving[0][1] - t0))
            try:
                d.proc.wait(timeout=30)
            except Exception:  # noqa: BLE001 - asserted below
                pass
            exited = time.time()
            self.assertIsNotNone(d.proc.poll(), "mpirun still running 30 s after the fault:\n" + d.log_tail())
            self.assertNotEqual(d.proc.returncode, 0)
            if kind == "stop":
                c.kill_host(1, signal.SIGCONT)  # a frozen host's processes end only once it runs again
            left = [c.pids(i) for i in range(2)]
            for _ in range(40):
                if not any(left):
                    break
                time.sleep(0.5)
                left = [c.pids(i) for i in range(2)]
            self.assertEqual(left, [[], []], "processes left on the hosts 20 s after the job ended")
            times = {"unavailable": max(got[n][2] for n in got) - t0, "health": left_serving[0][1] - t0,
                     "job_exit": exited - t0}
            FAULT_TIMES.setdefault(kind, []).append(times)
            return times

    def repeat_fault(self, kind):
        for _ in range(ARGS.fault_runs):
            self.fault(kind)

    def test_fault_kill_worker_host(self):
        self.repeat_fault("kill")

    def test_fault_link_down(self):
        self.repeat_fault("link_down")

    def test_fault_dropped_packets(self):
        self.repeat_fault("drop")

    def test_fault_stopped_host(self):
        self.repeat_fault("stop")

    def test_batch_rerun_after_fault(self):
        from netns_cluster import Cluster
        tmp = tempfile.mkdtemp(prefix="lsc-batch-")
        inp, out = os.path.join(tmp, "in.jsonl"), os.path.join(tmp, "out.jsonl")
        ids = ["p%02d" % i for i in range(16)]
        with open(inp, "w") as f:
            for i, k in enumerate(ids):
                f.write(json.dumps({"id": k, "prompt": "%s %d" % (PROMPTS[i % 3], i), "max_tokens": 24}) + "\n")
        cli = os.path.join(ARGS.build, "client", "layerskip")

        def batch(addr, output):
            return subprocess.Popen([cli, "batch", "--server", addr, "--input", inp, "--output", output,
                                     "--concurrency", "2", "--progress", "lines"], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)

        def lines(path):
            if not os.path.exists(path):
                return []
            with open(path) as f:
                return [json.loads(x) for x in f if x.strip()]

        # the answers of one process
        from daemon_harness import Daemon
        ref = os.path.join(tmp, "ref.jsonl")
        d = Daemon(os.path.join(ARGS.build, "daemon", "layerskipd"), ARGS.model, ["--threads", "2"])
        try:
            p = batch(d.addr, ref)
            log = p.communicate(timeout=300)[0]
            self.assertEqual(p.returncode, 0, log)
        finally:
            d.stop()
        want = {x["id"]: x["text"] for x in lines(ref)}
        self.assertEqual(sorted(want), ids)
        args = ["--exit-layer", "8", "--threads", "1", "--stage-timeout", str(STAGE_TIMEOUT)]
        with Cluster(2) as c:
            d = c.start_pipeline(ARGS.model, args, build=ARGS.build)
            p = batch(d.addr, out)
            t_end = time.time() + 120
            while len(lines(out)) < 3 and time.time() < t_end and p.poll() is None:
                time.sleep(0.05)
            self.assertGreaterEqual(len(lines(out)), 3, "the batch made no progress")
            c.kill_host(1)
            log = p.communicate(timeout=60)[0]
            rc = p.returncode
            self.assertEqual(rc, 1, log)
            self.assertIn("rerun the same command to resume", log)
            first = lines(out)
            self.assertLess(len(first), len(ids), "the fault came after the batch finished")
            d.proc.wait(timeout=30)
            # the supervisor's restart: the same launch on the same hosts
            d = c.start_pipeline(ARGS.model, args, build=ARGS.build)
            p = batch(d.addr, out)
            log = p.communicate(timeout=300)[0]
            self.assertEqual(p.returncode, 0, log)
            self.assertEqual(d.stop(), 0, d.log_tail())
        got = lines(out)
        self.assertEqual(sorted(x["id"] for x in got), ids, "every id exactly once")
        for x in got:
            self.assertNotIn("error", x, x)
            self.assertEqual(x["text"], want[x["id"]], x["id"])

    # ---- wrong setups fail fast, saying why ----
    def failed_start(self, c, expect, **kw):
        t0 = time.time()
        with self.assertRaises(RuntimeError) as cm:
            c.start_pipeline(ARGS.model, ["--exit-layer", "8", "--threads", "1"], build=ARGS.build, startup_s=60, **kw)
        took = time.time() - t0
        msg = str(cm.exception)
        self.assertRegex(msg, expect)
        self.assertLess(took, 45, "failing took %.0f s" % took)
        why = [x for x in msg.splitlines() if re.search(expect.replace("(?s)", ""), x)]
        print("\n  failed in %.1f s: %s" % (took, (why or [msg[-300:]])[0].strip()[:300]), file=sys.stderr)
        return msg, took

    def test_setup_host_not_answering(self):
        from netns_cluster import Cluster
        with Cluster(2) as c:
            c.link_down(1)  # listed in the hostfile, unreachable
            self.failed_start(c, r"(?s)(unable to reliably start|lost communication|did not answer|timed out)")
            for _ in range(40):
                if not any(c.pids(i) for i in range(2)):
                    break
                time.sleep(0.5)
            self.assertEqual([c.pids(i) for i in range(2)], [[], []])

    def test_setup_different_model(self):
        from netns_cluster import Cluster
        other = os.path.join(tempfile.mkdtemp(prefix="lsc-model-"), "other.gguf")
        subprocess.run([os.path.join(ARGS.build, "tests", "random-gguf"), "--out", other, "--shape", "smollm2-135m",
                        "--type", "Q8_0", "--layers", "30"], check=True, capture_output=True)
        with Cluster(2) as c:
            self.failed_start(c, r"(?s)stage 1.*fingerprint", worker_args=["--model", other])

    def test_setup_stages_over_budget(self):
        from netns_cluster import Cluster
        with Cluster(2) as c:
            t0 = time.time()
            with self.assertRaises(RuntimeError) as cm:
                c.start_pipeline(ARGS.model, ["--exit-layer", "8", "--threads", "1", "--stages", "20MiB,20MiB"],
                                 build=ARGS.build, startup_s=60)
            self.assertRegex(str(cm.exception), r"(?i)budget|does not fit|fit")
            self.assertLess(time.time() - t0, 45)

    # ---- soak ----
    def test_soak(self):
        if ARGS.soak_minutes <= 0:
            self.skipTest("not run: pass --soak-minutes M (scripts/test.sh: LS_CLUSTER_SOAK_MINUTES=M)")
        from netns_cluster import Cluster
        with Cluster(3) as c:
            d = c.start_pipeline(ARGS.model, ["--exit-layer", "8", "--threads", "1", "--max-sessions", "8",
                                              "--metrics-listen", "%s:9464" % c.addrs[0]], build=ARGS.build)
            stub = self.pbg.LayerSkipStub(d.channel)
            stop_at = time.time() + ARGS.soak_minutes * 60
            counts, errors = [0] * 8, []

            def stream(k):
                i = 0
                while time.time() < stop_at:
                    s, e, n = CASES[(k + i) % 3]
                    try:
                        for _ in stub.GenerateStream(req(self.pb, PROMPTS[i % 3] + " %d" % i, s, e, n, n=48),
                                                     timeout=120):
                            pass
                        counts[k] += 1
                    except self.grpc.RpcError as ex:
                        errors.append("%s %s" % (ex.code(), ex.details()))
                        counts[k] += 1
                    i += 1

            def rss():
                out = {}
                for h in range(3):
                    for pid in c.pids(h):
                        try:
                            with open("/proc/%d/comm" % pid) as f:
                                comm = f.read().strip()
                            if comm != "layerskipd" and not comm.startswith("layerskip-w"):  # comm is cut at 15 bytes
                                continue
                            with open("/proc/%d/status" % pid) as f:
                                kb = [int(x.split()[1]) for x in f if x.startswith("VmRSS:")][0]
                            out["host%d %s" % (h + 1, comm)] = kb
                        except (OSError, IndexError):
                            pass
                return out

            threads = [threading.Thread(target=stream, args=(k,)) for k in range(8)]
            for t in threads:
                t.start()
            warm = time.time() + min(60, ARGS.soak_minutes * 60 / 5)
            samples = []
            while time.time() < stop_at:
                time.sleep(5)
                if time.time() >= warm:
                    samples.append(rss())
            for t in threads:
                t.join(180)
            self.assertEqual(errors, [])
            self.assertGreaterEqual(len(samples), 2)
            for name in samples[0]:
                base = samples[0][name]
                worst = max(s.get(name, base) for s in samples)
                print("soak: %s RSS %d -> max %d kB (%+.1f%%)" % (name, base, worst, 100.0 * (worst - base) / base),
                      file=sys.stderr)
                self.assertLessEqual(worst, base * 1.05, name)
            metrics = urllib.request.urlopen("http://%s:9464/metrics" % c.addrs[0], timeout=10).read().decode()
            served = sum(float(x.split()[-1]) for x in metrics.splitlines()
                         if x.startswith("layerskip_requests_total{") and "GenerateStream" in x)
            print("soak: %d requests over %.0f min, daemon counted %d" % (sum(counts), ARGS.soak_minutes, served),
                  file=sys.stderr)
            self.assertEqual(int(served), sum(counts))
            self.assertEqual(d.stop(), 0, d.log_tail())


FAULT_TIMES = {}


def health_stubs():
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    return health_pb2, health_pb2_grpc


def report_fault_times():
    if not FAULT_TIMES:
        return
    print("\nfault -> time (s), median of N: UNAVAILABLE to both requests, health not SERVING, mpirun exited",
          file=sys.stderr)
    for kind, runs in FAULT_TIMES.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print("  %-10s N=%d  unavailable %.2f  health %.2f  job exit %.2f" %
              (kind, len(runs), med["unavailable"], med["health"], med["job_exit"]), file=sys.stderr)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--fault-runs", type=int, default=1, help="runs of each fault (medians printed)")
    ap.add_argument("--soak-minutes", type=float, default=0, help="run the soak for M minutes (0: skip)")
    ARGS, rest = ap.parse_known_args()
    atexit.register(report_fault_times)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
