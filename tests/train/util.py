"""Shared helpers of the tools/train tests: paths, a tiny test runner, and
running train.py / convert.py in child processes (each run is a fresh
process, as a user's would be)."""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_DIR = os.path.join(ROOT, "tools", "train")
sys.path.insert(0, TRAIN_DIR)
# a slice of the stdlib keeps the tests fast; 0.3 held out so the slice has held-out files
DATA_ARGS = ["--data-dir", os.environ.get("LS_TRAIN_DATA", "/usr/lib/python3.11"),
             "--max-data-bytes", "300000", "--heldout-frac", "0.3"]


def bin_dir():
    d = os.environ.get("LS_BIN_DIR")
    if not d:
        for arg in sys.argv[1:]:
            if arg.startswith("--bin-dir="):
                d = arg.split("=", 1)[1]
    if not d:
        d = os.path.join(ROOT, "build")
    return d


_CREATED = []


def tmp_dir(tag):
    """a fresh folder under LS_TMP_DIR (ctest sets it), removed when every
    test passed and kept for inspection otherwise"""
    base = os.environ.get("LS_TMP_DIR") or None
    if base:
        os.makedirs(base, exist_ok=True)
    d = tempfile.mkdtemp(prefix=f"{tag}-", dir=base)
    _CREATED.append(d)
    return d


def run(args, check=True):
    t0 = time.time()
    p = subprocess.run([sys.executable] + args, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"command failed ({p.returncode}): {' '.join(args)}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    print(f"    ({time.time() - t0:.1f}s) {' '.join(os.path.basename(a) if a.endswith('.py') else a for a in args[:1])} ...")
    return p


def train(out, extra):
    return run([os.path.join(TRAIN_DIR, "train.py"), "--out", out, "--threads", "1"] + DATA_ARGS + extra)


def main(tests):
    passed = failed = 0
    for t in tests:
        t0 = time.time()
        try:
            t()
            passed += 1
            print(f"PASS {t.__name__} ({time.time() - t0:.1f}s)", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {t.__name__}", flush=True)
            traceback.print_exc()
    print(f"{passed} passed, {failed} failed")
    if failed:
        print("kept for inspection: " + " ".join(_CREATED))
        return 1
    for d in _CREATED:
        shutil.rmtree(d, ignore_errors=True)
    return 0
