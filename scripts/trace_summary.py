#!/usr/bin/python3
"""trace_summary.py: where the time of a traced pipeline run went, per rank.

  /usr/bin/python3 scripts/trace_summary.py PREFIX

PREFIX is layerskipd's --trace PREFIX (files PREFIX.rank<R>.jsonl, one span
per line, worker/README.md "Tracing"). Prints the wall time from the first
span to the last, and for each (rank, span kind): spans, positions, total
time and its share of the wall time, time per position. Trace one request
for a clean picture (the files grow while the daemon runs).
"""
import collections
import glob
import json
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    spans = collections.defaultdict(list)
    for path in glob.glob(sys.argv[1] + ".rank*.jsonl"):
        with open(path) as f:
            for line in f:
                s = json.loads(line)
                spans[(s["rank"], s["span"])].append(s)
    if not spans:
        sys.exit("no spans in %s.rank*.jsonl" % sys.argv[1])
    t0 = min(s["t0"] for v in spans.values() for s in v)
    t1 = max(s["t1"] for v in spans.values() for s in v)
    wall = max(t1 - t0, 1)
    print("wall %.1f ms" % (wall / 1000))
    for (rank, kind), v in sorted(spans.items()):
        tot = sum(s["t1"] - s["t0"] for s in v)
        n = sum(s["n"] for s in v)
        print("rank %d %-8s %4d spans %5d positions %8.1f ms %4.0f%% %8.1f us/position"
              % (rank, kind, len(v), n, tot / 1000, 100 * tot / wall, tot / max(n, 1)))


if __name__ == "__main__":
    main()
