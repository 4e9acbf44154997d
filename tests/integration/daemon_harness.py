"""daemon_harness.py: start and stop a real layerskipd for integration tests.

Each Daemon owns one process on a free loopback port (or a unix socket),
waits until grpc.health.v1 says SERVING, and on stop sends SIGTERM and
returns the exit status, so a test can assert a clean (ASan-clean under
the sanitizer build) shutdown. Processes are killed on every error path.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from scratch import scratch_dir, track


def add_stub_path(proto_py):
    if proto_py not in sys.path:
        sys.path.insert(0, proto_py)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Daemon:
    def __init__(self, binary, model, args=(), metrics=False, tmpdir=None, startup_s=120, prefix=(), suffix=(),
                 listen=None):
        """prefix/suffix wrap the command: mpirun ... -np 1 [layerskipd ...] : -np N layerskip-worker;
        listen: HOST:PORT to serve on instead of a free loopback port (a test host's address)"""
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        self.port = int(listen.rsplit(":", 1)[1]) if listen else free_port()
        self.addr = listen or "127.0.0.1:%d" % self.port
        self.metrics_port = free_port() if metrics else None
        self.tmpdir = tmpdir or scratch_dir("test")
        self.log_path = os.path.join(self.tmpdir, "layerskipd-%d.log" % self.port)
        cmd = [binary, "--model", model, "--listen", self.addr, "--log-level", "debug"] + list(args)
        if metrics:
            cmd += ["--metrics-listen", "127.0.0.1:%d" % self.metrics_port]
        cmd = list(prefix) + cmd + list(suffix)
        self.cmd = cmd
        self.log = open(self.log_path, "wb")
        self.proc = track(subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT))
        self.channel = None
        self.tls = "--tls-cert" in args
        if self.tls:
            return  # the caller waits with its own TLS channel
        self.channel = grpc.insecure_channel(self.addr, options=[("grpc.max_send_message_length", 64 << 20)])
        health = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.time() + startup_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("layerskipd exited with %d during startup:\n%s" % (self.proc.returncode, self.log_tail()))
            try:
                r = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            if time.time() > deadline:
                self.kill()
                raise RuntimeError("layerskipd not SERVING after %d s:\n%s" % (startup_s, self.log_tail()))
            time.sleep(0.1)

    def log_tail(self, n=4000):
        try:
            if not self.log.closed:
                self.log.flush()
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def metrics(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port, timeout=5) as r:
            return r.read().decode()

    def metric(self, name, labels=None):
        """value of one sample, 0.0 when absent"""
        want = None
        if labels:
            want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            key, _, value = line.rpartition(" ")
            if want is None:
                if key == name:
                    return float(value)
                continue
            if "{" not in key or key[:key.index("{")] != name:
                continue
            got = ",".join(sorted(p for p in key[key.index("{") + 1:-1].split(",") if p))
            if got == want:
                return float(value)
        return 0.0

    def wait_metric(self, name, pred, timeout=10, labels=None):
        end = time.time() + timeout
        v = self.metric(name, labels)
        while not pred(v) and time.time() < end:
            time.sleep(0.05)
            v = self.metric(name, labels)
        return v

    def stage_pids(self):
        """MPI pipeline: {rank: pid} from the startup log ("stage 1: rank 1 on HOST (pid N)")"""
        return {int(r): int(p) for r, p in
                re.findall(r"stage (\d+): rank \d+ on \S+ \(pid (\d+)\)", self.log_tail(1 << 20))}

    def stop(self, timeout=60):
        """SIGTERM, wait, return the exit status (kill -9 and raise after timeout).
        A pipeline (started under mpirun) gets the SIGTERM on layerskipd, rank 0:
        it drains, shuts the workers down and mpirun exits 0 (SIGTERM to mpirun
        itself makes it stop every rank and exit 1)."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proc.poll() is None:
            rank0 = self.stage_pids().get(0)
            if rank0:
                os.kill(rank0, signal.SIGTERM)
            else:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise RuntimeError("layerskipd did not exit %d s after SIGTERM:\n%s" % (timeout, self.log_tail()))
        self.log.close()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
