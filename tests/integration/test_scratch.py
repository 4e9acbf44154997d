"""test_scratch.py: the integration tests' temporary folders go away however a run ends.

A child Python process (a unittest run, like test_daemon.py) makes scratch
folders and starts a tracked subprocess, then is ended by SIGTERM, SIGINT or a
normal exit: no folder and no process may remain. A folder whose owner died by
SIGKILL is swept by the next run. Runs with any python3; no daemon needed.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r"""
import os, subprocess, sys, time, unittest
sys.path.insert(0, %(here)r)
from scratch import install_signal_cleanup, scratch_dir, track

class T(unittest.TestCase):
    def test_wait(self):
        dirs = [scratch_dir("test"), scratch_dir("tls"), scratch_dir("trace")]
        for d in dirs:
            with open(os.path.join(d, "f"), "w") as f:
                f.write("x")
        p = track(subprocess.Popen(["sleep", "300"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        try:
            print("READY " + " ".join(dirs + [str(p.pid)]), flush=True)
            if %(mode)r == "exit":
                return
            time.sleep(300)
        finally:
            print("finally ran", flush=True)

install_signal_cleanup()
unittest.main(argv=["child"], exit=True)
"""


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie not yet reaped by its parent counts as gone
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class TestScratch(unittest.TestCase):
    def run_child(self, mode, sig=None):
        p = subprocess.Popen([sys.executable, "-c", CHILD % {"here": HERE, "mode": mode}],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen = []
        for text in p.stdout:
            seen.append(text)
            if text.startswith("READY "):
                break
        line = seen[-1].split()[1:] if seen else []
        self.assertEqual(len(line), 4, "child printed:\n" + "".join(seen))
        dirs, pid = line[:3], int(line[3])
        for d in dirs:
            self.assertTrue(os.path.isdir(d), d)
            self.assertRegex(os.path.basename(d), r"^lsd-(test|tls|trace)-%d-" % p.pid)
        if sig is not None:
            p.send_signal(sig)
        out = p.stdout.read()
        p.wait(60)
        p.stdout.close()
        self.assertIn("finally ran", out)
        for d in dirs:
            self.assertFalse(os.path.exists(d), "%s left behind after %s" % (d, mode))
        end = time.time() + 10
        while alive(pid) and time.time() < end:
            time.sleep(0.05)
        self.assertFalse(alive(pid), "tracked subprocess %d still running after %s" % (pid, mode))
        return p.returncode

    def test_normal_exit(self):
        self.assertEqual(self.run_child("exit"), 0)

    def test_sigterm(self):
        self.assertNotEqual(self.run_child("wait", signal.SIGTERM), 0)

    def test_sigint(self):
        self.assertNotEqual(self.run_child("wait", signal.SIGINT), 0)

    def test_stale_folders_of_dead_runs_are_swept(self):
        # a pid that no longer exists: a finished child's
        dead = subprocess.Popen(["true"])
        dead.wait()
        base = tempfile.gettempdir()
        stale = tempfile.mkdtemp(prefix="lsd-test-%d-" % dead.pid, dir=base)
        live = tempfile.mkdtemp(prefix="lsd-test-%d-" % os.getpid(), dir=base)
        other = tempfile.mkdtemp(prefix="lsd-notes-", dir=base)  # not of the form lsd-<kind>-<pid>-
        try:
            code = "import sys; sys.path.insert(0, %r); import scratch; print(scratch.scratch_dir('test'))" % HERE
            made = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
            self.assertEqual(made.returncode, 0, made.stderr)
            self.assertFalse(os.path.exists(stale), "stale folder of dead pid %d not swept" % dead.pid)
            self.assertTrue(os.path.isdir(live), "folder of a live process was swept")
            self.assertTrue(os.path.isdir(other))
            self.assertFalse(os.path.exists(made.stdout.strip()), "the child's own folder outlived it")
        finally:
            for d in (stale, live, other):
                shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
