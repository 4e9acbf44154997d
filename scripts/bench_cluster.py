#!/usr/bin/python3
"""bench_cluster.py: the pipeline across test hosts at several link speeds.

  /usr/bin/python3 scripts/bench_cluster.py [--build build] [--model M]
      [--hosts 2,3] [--rates none,1gbit,100mbit] [-n 64] [--runs 3] [--json OUT]

Needs root (tests/cluster/netns_cluster.py: one network namespace per test
host, TCP between them, `tbf` on each host's link for a rate). For each
strategy (autoregressive; self_speculative with E=8, k=4), one greedy
stream of n tokens (ignore_eos) at a time, measured at the client, median
of --runs after one warm-up request:

  single      layerskipd --threads 1 in one process (the baseline)
  H hosts     mpirun over H test hosts, one rank each (--threads 1),
              layerskipd --exit-layer 8, default stage split

and the bytes that crossed each worker host's link per generated token
(in + out, from the host's interface counters: MPI and mpirun's control
traffic; the client talks to host 1 only). The runs of one configuration
follow each other; configurations are measured in turn, not interleaved:
read ratios of large differences only.

A benchmark, not a test.
"""
import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STRATEGIES = [("autoregressive", 0, 0), ("self_speculative", 8, 4)]
PROMPT = "Write a short story about a robot who learns to paint."


def stubs(build):
    sys.path.insert(0, os.path.join(build, "proto", "python"))
    sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
    sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
    from layerskip.v1 import layerskip_pb2 as pb, layerskip_pb2_grpc as pbg
    return pb, pbg


def one(stub, pb, strategy, e, k, n):
    r = pb.GenerateRequest(prompt=PROMPT, max_tokens=n, strategy=strategy, ignore_eos=True)
    if e:
        r.exit_layer = e
    if k:
        r.num_speculations = k
    t0 = time.time()
    got = 0
    for ch in stub.GenerateStream(r, timeout=600):
        got += len(ch.token_ids)
    return got, time.time() - t0


def link_bytes(cluster, i):
    port = "%sv%d" % (cluster.tag, i + 1)
    tot = 0
    for d in ("rx_bytes", "tx_bytes"):
        with open("/sys/class/net/%s/statistics/%s" % (port, d)) as f:
            tot += int(f.read())
    return tot


def measure(stub, pb, args, cluster=None):
    out = {}
    for s, e, k in STRATEGIES:
        one(stub, pb, s, e, k, 8)  # warm-up
        rates, per_tok = [], {}
        for _ in range(args.runs):
            before = [link_bytes(cluster, i) for i in range(1, cluster.n)] if cluster else []
            got, dt = one(stub, pb, s, e, k, args.n)
            rates.append(got / dt)
            if cluster:
                for i in range(1, cluster.n):
                    per_tok.setdefault("host%d" % (i + 1), []).append(
                        (link_bytes(cluster, i) - before[i - 1]) / got)
        out[s] = {"tok_s": statistics.median(rates),
                  "bytes_per_token": {h: statistics.median(v) for h, v in per_tok.items()}}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--hosts", default="2,3")
    ap.add_argument("--rates", default="none,1gbit,100mbit")
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    pb, pbg = stubs(args.build)
    from daemon_harness import Daemon
    from netns_cluster import Cluster

    results = []
    d = Daemon(os.path.join(args.build, "daemon", "layerskipd"), args.model, ["--threads", "1"])
    try:
        res = measure(pbg.LayerSkipStub(d.channel), pb, args)
    finally:
        d.stop()
    results.append({"hosts": 1, "rate": "-", **res})
    print("single process: " + ", ".join("%s %.1f tok/s" % (s, r["tok_s"]) for s, r in res.items()), flush=True)
    for h in [int(x) for x in args.hosts.split(",")]:
        for rate in args.rates.split(","):
            with Cluster(h, rate=None if rate == "none" else rate) as c:
                d = c.start_pipeline(args.model, ["--exit-layer", "8", "--threads", "1"], build=args.build)
                try:
                    res = measure(pbg.LayerSkipStub(d.channel), pb, args, c)
                finally:
                    d.stop()
            results.append({"hosts": h, "rate": rate, **res})
            print("%d hosts, link %s: " % (h, rate) + "; ".join(
                "%s %.1f tok/s (%s)" % (s, r["tok_s"], ", ".join("%s %.0f B/token" % kv
                                                               for kv in r["bytes_per_token"].items()))
                for s, r in res.items()), flush=True)
    base = results[0]
    print("\n| hosts | link | autoregressive tok/s | vs 1 process | self_speculative tok/s | vs 1 process |"
          " bytes/token per worker link (AR; self-spec) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        ar, ss = r["autoregressive"], r["self_speculative"]
        bpt = "; ".join("%s %.0f / %.0f" % (h, ar["bytes_per_token"][h], ss["bytes_per_token"][h])
                        for h in ar["bytes_per_token"])
        print("| %s | %s | %.1f | %.2fx | %.1f | %.2fx | %s |" % (
            r["hosts"], r["rate"], ar["tok_s"], ar["tok_s"] / base["autoregressive"]["tok_s"], ss["tok_s"],
            ss["tok_s"] / base["self_speculative"]["tok_s"], bpt or "-"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
