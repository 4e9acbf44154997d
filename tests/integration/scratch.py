"""scratch.py: the integration tests' temporary folders, removed however a test ends.

Every folder is /tmp/lsd-<kind>-<pid>-XXXXXX (short on purpose: unix socket
paths are limited to 107 bytes). They go away
  - at interpreter exit (atexit), after a normal end, a failure or an exception;
  - on SIGTERM, SIGINT or SIGHUP: the handler raises KeyboardInterrupt, which
    unittest does not swallow, so every finally block runs (daemons are
    stopped) and then the atexit hook removes the folders;
  - after a SIGKILL (ctest's timeout, the OOM killer): the next run's first
    scratch_dir() sweeps every lsd-* folder whose owning pid is gone.
Processes registered with track() are killed at exit if still running, so a
folder is never removed under a live daemon's feet.
"""
import atexit
import os
import re
import shutil
import signal
import subprocess
import tempfile

PREFIX = "lsd-"
_NAME = re.compile(r"^lsd-[a-z]+-(\d+)-")
_dirs = []
_procs = []
_swept = False
_handlers_installed = False


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(base=None):
    """Remove lsd-<kind>-<pid>-* folders left by runs whose process is gone."""
    base = base or tempfile.gettempdir()
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        m = _NAME.match(name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)


def _interrupted(signum, _frame):
    # KeyboardInterrupt, not SystemExit: unittest records SystemExit as a test
    # error and goes on with the next test; it re-raises KeyboardInterrupt
    raise KeyboardInterrupt("signal %d" % signum)


def install_signal_cleanup():
    """SIGTERM/SIGINT/SIGHUP unwind through finally blocks and atexit."""
    global _handlers_installed
    if _handlers_installed:
        return
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _interrupted)
    _handlers_installed = True


def scratch_dir(kind):
    """A new folder /tmp/lsd-<kind>-<pid>-XXXXXX, removed at exit."""
    global _swept
    if not _swept:
        sweep_stale()
        _swept = True
    install_signal_cleanup()
    d = tempfile.mkdtemp(prefix="%s%s-%d-" % (PREFIX, kind, os.getpid()))
    _dirs.append(d)
    return d


def track(proc):
    """Kill this subprocess.Popen at exit if it still runs."""
    _procs.append(proc)
    return proc


def cleanup():
    for p in _procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    del _procs[:]
    for d in _dirs:
        shutil.rmtree(d, ignore_errors=True)
    del _dirs[:]


atexit.register(cleanup)
