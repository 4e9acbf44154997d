#!/usr/bin/python3
"""netns_cluster.py: separate test hosts on this machine, for the MPI pipeline over TCP.

Each test host is a Linux network namespace (its own interfaces, addresses
and TCP stack) joined to a bridge in the root namespace by a veth pair, on a
private range (10.77.N.0/24). Jobs start as deploy/README.md says for
several machines: `mpirun --hostfile` with one slot per host in pipeline
order, `--map-by node`, MPI kept on the test network (`btl tcp,self`,
`btl_tcp_if_include`, `oob_tcp_if_include`); only the remote shell differs:
instead of ssh, an rsh agent (this file with --rsh) that runs the command
inside the host's namespace. Needs root and iproute2.

  with Cluster(2) as c:                # creates hosts lsc<pid>h1, lsc<pid>h2
      d = c.start_pipeline(model, ["--exit-layer", "8"], n_workers=1)
      ...                              # d.addr is rank 0's gRPC address on host 1
      d.stop()
  # everything is removed on exit, also on failure or SIGTERM/SIGINT

Faults: c.link_down(i), c.drop(i) (packets vanish, links up, no reset),
c.kill_host(i) (SIGKILL to every process in host i's namespace),
c.stop_host(i) (SIGSTOP). Bandwidth: Cluster(n, rate="100mbit") shapes each
host's link with tbf.
"""
import atexit
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MPI_FLAGS = ["--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "--map-by", "node"]
# mpirun and each host's orted notice a silent peer (link down, packets
# dropped) within about 2 + 3 x 1 s, instead of OpenMPI's 300 + 9 x 20 s
KEEPALIVE = ["--mca", "oob_tcp_keepalive_time", "2", "--mca", "oob_tcp_keepalive_intvl", "1",
             "--mca", "oob_tcp_keepalive_probes", "3"]


def sh(*cmd, check=True, ns=None):
    if ns:
        cmd = ("ip", "netns", "exec", ns) + cmd
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


class Cluster:
    def __init__(self, n, rate=None, subnet=None):
        if os.geteuid() != 0:
            raise RuntimeError("the test cluster needs root (network namespaces)")
        self.n = n
        self.tag = "lsc%d" % (os.getpid() % 100000)
        third = subnet if subnet is not None else 100 + os.getpid() % 100
        self.net = "10.77.%d" % third
        self.cidr = self.net + ".0/24"
        self.bridge = self.tag + "br"
        self.hosts = ["%sh%d" % (self.tag, i + 1) for i in range(n)]
        self.addrs = ["%s.%d" % (self.net, 11 + i) for i in range(n)]
        self.procs = []
        self.closed = False
        self._old = {}
        try:
            self._create(rate)
        except Exception:
            self.close()
            raise
        atexit.register(self.close)
        for s in (signal.SIGTERM, signal.SIGINT):
            self._old[s] = signal.signal(s, self._on_signal)

    def _on_signal(self, signum, frame):
        self.close()
        signal.signal(signum, self._old.get(signum) or signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def _create(self, rate):
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", self.net + ".1/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i, (ns, addr) in enumerate(zip(self.hosts, self.addrs)):
            port = "%sv%d" % (self.tag, i + 1)
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", port, "master", self.bridge)
            sh("ip", "link", "set", port, "up")
            sh("ip", "link", "set", "lo", "up", ns=ns)
            sh("ip", "addr", "add", addr + "/24", "dev", "eth0", ns=ns)
            sh("ip", "link", "set", "eth0", "up", ns=ns)
            sh("ip", "route", "add", "default", "via", self.net + ".1", ns=ns)
            # give up on a peer that stops acknowledging after about 3 s of
            # retransmissions (Linux's default, 15 retries, is about 15 min):
            # mpirun talking to a cut-off host's orted would hang that long
            sh("sysctl", "-q", "-w", "net.ipv4.tcp_retries2=4", ns=ns)
            if rate:
                sh("tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", rate, "burst", "64kb",
                   "latency", "50ms", ns=ns)
        self.hostfile = os.path.join("/tmp", self.tag + ".hostfile")
        with open(self.hostfile, "w") as f:
            for addr in self.addrs:
                f.write("%s slots=1\n" % addr)
        # the rsh agent: OpenMPI runs "AGENT [options] HOST COMMAND..."
        self.agent = os.path.join("/tmp", self.tag + ".rsh")
        with open(self.agent, "w") as f:
            f.write("#!/bin/sh\n# %s: run a command in a test host's namespace (OpenMPI plm_rsh_agent)\n" % self.tag)
            f.write("while [ $# -gt 0 ]; do case \"$1\" in -*) shift;; *) break;; esac; done\n")
            f.write("host=$1; shift\ncase \"$host\" in\n")
            for ns, addr in zip(self.hosts, self.addrs):
                f.write("  %s|%s) ns=%s;;\n" % (addr, ns, ns))
            f.write("  *) echo \"%s.rsh: unknown test host $host\" >&2; exit 255;;\nesac\n" % self.tag)
            # its own hostname too (a UTS namespace per command), so each stage names its host
            f.write("exec ip netns exec \"$ns\" unshare --uts /bin/sh -c 'hostname \"$0\" && exec /bin/sh -c \"$1\"' "
                    "\"$ns\" \"$*\"\n")
        os.chmod(self.agent, 0o755)

    def mpirun(self, ranks):
        """the launch line for ranks = [(n, argv), ...] in pipeline order"""
        cmd = ["mpirun"] + MPI_FLAGS + [
            "--hostfile", self.hostfile, "--mca", "plm_rsh_agent", self.agent,
            "--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", self.cidr,
            "--mca", "oob_tcp_if_include", self.cidr + "," + self.net + ".1/32"] + KEEPALIVE
        for k, (n, argv) in enumerate(ranks):
            if k:
                cmd.append(":")
            cmd += ["-np", str(n)] + list(argv)
        return cmd

    def start_pipeline(self, model, daemon_args=(), n_workers=None, build=None, port=50051, startup_s=180,
                       worker_args=(), mpirun_args=()):
        """layerskipd as rank 0 on host 1 (listening on its address), a worker
        on each further host; returns a Daemon (tests/integration) whose
        channel reaches rank 0 from the root namespace"""
        sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
        from daemon_harness import Daemon
        build = build or os.path.join(ROOT, "build")
        n_workers = self.n - 1 if n_workers is None else n_workers
        daemon = os.path.join(build, "daemon", "layerskipd")
        worker = os.path.join(build, "worker", "layerskip-worker")
        # mpirun runs on host 1, as on a cluster's first node
        cmd = self.mpirun([(1, ["__DAEMON__"]), (n_workers, [worker] + list(worker_args))])
        cmd[1:1] = list(mpirun_args)
        launch = self.on_host(0, cmd)
        i = launch.index("__DAEMON__")
        prefix, suffix = launch[:i], launch[i + 1:]
        d = Daemon(daemon, model, list(daemon_args), prefix=prefix, suffix=suffix, startup_s=startup_s,
                   listen="%s:%d" % (self.addrs[0], port))
        self.procs.append(d)
        return d

    def on_host(self, i, cmd):
        """cmd run inside host i (its namespace, with its hostname)"""
        return ["ip", "netns", "exec", self.hosts[i], "unshare", "--uts", "/bin/sh", "-c",
                'hostname "$0" && exec "$@"', self.hosts[i]] + list(cmd)

    # ---- faults ----
    def pids(self, i):
        r = sh("ip", "netns", "pids", self.hosts[i], check=False)
        return [int(p) for p in r.stdout.split()]

    def kill_host(self, i, sig=signal.SIGKILL):
        for p in self.pids(i):
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass

    def stop_host(self, i):
        self.kill_host(i, signal.SIGSTOP)

    def link_down(self, i):
        sh("ip", "link", "set", "%sv%d" % (self.tag, i + 1), "down")

    def drop(self, i):
        """every packet to and from host i is discarded, the links staying up,
        so connections hang rather than reset (what a firewall's DROP rule
        does): a queue of length 0 on both ends of its link. This needs no
        firewall tools, and tc here has no drop action (no cls_matchall or
        act_gact in this kernel)."""
        sh("tc", "qdisc", "replace", "dev", "eth0", "root", "pfifo", "limit", "0", ns=self.hosts[i])
        sh("tc", "qdisc", "replace", "dev", "%sv%d" % (self.tag, i + 1), "root", "pfifo", "limit", "0")

    def close(self):
        if self.closed:
            return
        self.closed = True
        for d in self.procs:
            try:
                if d.proc.poll() is None:
                    d.proc.kill()
                    d.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001 - teardown goes on
                pass
        for i in range(self.n):
            self.kill_host(i, signal.SIGCONT)
            self.kill_host(i, signal.SIGKILL)
        for ns in self.hosts:
            sh("ip", "netns", "del", ns, check=False)
        for i in range(self.n):
            sh("ip", "link", "del", "%sv%d" % (self.tag, i + 1), check=False)
        sh("ip", "link", "del", self.bridge, check=False)
        for p in (getattr(self, "hostfile", None), getattr(self, "agent", None)):
            if p and os.path.exists(p):
                os.remove(p)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
