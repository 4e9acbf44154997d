#!/usr/bin/python3
"""run_client_test.py: one example client (or grpcurl) against a live layerskipd.

Prepares the client first (Go: protoc plugins + generated code + build, Node:
npm ci, grpcurl: go install; all under --work-dir, never in the source tree),
then starts layerskipd on a free loopback port or a unix socket, waits for
grpc.health.v1 SERVING, runs the client, checks its output against a Generate
call of its own, stops the daemon with SIGTERM and requires exit status 0.
The daemon dies with this script (PR_SET_PDEATHSIG), and a finally block
kills it on any failure, so no process is left behind.

Needs /usr/bin/python3 with grpcio and the stubs of proto/CMakeLists.txt
(--proto-py). Exit 0 = pass; on failure the reason and the daemon's log tail.
"""
import argparse
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from scratch import scratch_dir

# Pinned tool versions; the Go and Node library versions are in go.mod / package-lock.json.
PROTOC_GEN_GO_GRPC = "google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2"
GRPCURL = "github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4"
GO_MODULE = "layerskip/client/examples/go"  # go_package in layerskip.proto

PROMPT = "The capital of France is"  # the examples' default prompt
HEALTH_TIMEOUT_S = 120  # model load under ASan is slow
CLIENT_TIMEOUT_S = 240
STOP_TIMEOUT_S = 30
SETUP_TIMEOUT_S = 540  # first-time module downloads (grpcurl: ~2 min)


class TestFailure(Exception):
    pass


def log(msg):
    print(f"[run_client_test] {msg}", flush=True)


def die_with_parent():
    """preexec_fn: SIGKILL the child when this script dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def run(cmd, timeout, env=None, cwd=None, check=True):
    log("$ " + " ".join(cmd))
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, timeout=timeout, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, preexec_fn=die_with_parent)
    except subprocess.TimeoutExpired as e:
        raise TestFailure(f"{cmd[0]} did not finish in {timeout} s (killed); output so far:\n{e.output or ''}")
    except FileNotFoundError:
        raise TestFailure(f"{cmd[0]} not found: install it (see client/examples/README.md)")
    if p.stdout:
        print(p.stdout, end="" if p.stdout.endswith("\n") else "\n", flush=True)
    if check and p.returncode != 0:
        raise TestFailure(f"{' '.join(cmd[:3])} ... exited {p.returncode}")
    return p


def need_tool(path, what):
    if not path or not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise TestFailure(f"{what} not found ({path or 'not configured'}): install it and re-run cmake")
    return path


def go_env(args):
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(args.go) + os.pathsep + env.get("PATH", "")
    env.setdefault("GOFLAGS", "-buildvcs=false")
    return env


def go_install(args, pkg_at_version, name):
    """Install one Go command into <work>/tools/<pkg@version>/, once."""
    gobin = os.path.join(args.work_dir, "tools", pkg_at_version.replace("/", "_"))
    exe = os.path.join(gobin, name)
    if not os.path.exists(exe):
        env = go_env(args)
        env["GOBIN"] = gobin
        t0 = time.monotonic()
        run([args.go, "install", pkg_at_version], SETUP_TIMEOUT_S, env=env, cwd=args.work_dir)
        log(f"installed {pkg_at_version} in {time.monotonic() - t0:.0f} s")
    return exe


def go_mod_version(go_mod, module):
    with open(go_mod) as f:
        for line in f:
            parts = line.split()
            if module in parts:
                return parts[parts.index(module) + 1]
    raise TestFailure(f"{go_mod} does not require {module}: run `go mod tidy` there")


def prepare_go(args):
    """Copy the module, generate layerskippb/ into the copy, build `example`."""
    need_tool(args.go, "go (Go 1.26)")
    need_tool(args.protoc, "protoc")
    src = os.path.join(args.examples_dir, "go")
    dst = os.path.join(args.work_dir, "go")
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    for name in ("go.mod", "go.sum", "main.go"):
        shutil.copy(os.path.join(src, name), dst)
    # protoc-gen-go at the protobuf version go.mod pins, so generated code and runtime match
    pb_version = go_mod_version(os.path.join(src, "go.mod"), "google.golang.org/protobuf")
    gen_go = go_install(args, f"google.golang.org/protobuf/cmd/protoc-gen-go@{pb_version}", "protoc-gen-go")
    gen_grpc = go_install(args, PROTOC_GEN_GO_GRPC, "protoc-gen-go-grpc")
    run([args.protoc, f"-I{args.proto_dir}",
         f"--plugin=protoc-gen-go={gen_go}", f"--plugin=protoc-gen-go-grpc={gen_grpc}",
         "--go_out=.", f"--go_opt=module={GO_MODULE}", "--go-grpc_out=.", f"--go-grpc_opt=module={GO_MODULE}",
         "layerskip/v1/layerskip.proto"], 60, cwd=dst)
    # -mod=readonly: go.mod/go.sum as committed must be complete (reproducible)
    env = go_env(args)
    env["GOFLAGS"] = env["GOFLAGS"] + " -mod=readonly"
    t0 = time.monotonic()
    run([args.go, "build", "-o", "example", "."], SETUP_TIMEOUT_S, env=env, cwd=dst)
    log(f"go build took {time.monotonic() - t0:.0f} s")
    return [os.path.join(dst, "example")]


def prepare_node(args):
    """Copy package.json, package-lock.json and example.js, `npm ci` beside them."""
    need_tool(args.node, "node (Node 20)")
    need_tool(args.npm, "npm")
    src = os.path.join(args.examples_dir, "node")
    dst = os.path.join(args.work_dir, "node")
    os.makedirs(dst, exist_ok=True)
    for name in ("package.json", "package-lock.json", "example.js"):
        shutil.copy(os.path.join(src, name), dst)
    t0 = time.monotonic()
    # npm runs under `#!/usr/bin/env node`: the configured node goes first on PATH
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(args.node) + os.pathsep + env.get("PATH", "")
    run([args.npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], SETUP_TIMEOUT_S, env=env, cwd=dst)
    log(f"npm ci took {time.monotonic() - t0:.0f} s")
    return [args.node, os.path.join(dst, "example.js"),
            "--proto", os.path.join(args.proto_dir, "layerskip/v1/layerskip.proto")]


def prepare_python(args):
    return [sys.executable, os.path.join(args.examples_dir, "python", "example.py")]


def free_port():
    # The daemon binds it a moment later; a clash shows up as a clear bind error in its log.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return f"(no log: {e})"


def wait_serving(daemon, address, log_path, stubs):
    import grpc
    health_pb2, health_pb2_grpc = stubs
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    last = "no answer yet"
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if daemon.poll() is not None:
                raise TestFailure(f"layerskipd exited with {daemon.returncode} before serving; its log:\n{tail(log_path)}")
            try:
                r = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
            except grpc.RpcError as e:
                last = f"{e.code().name}: {e.details()}"
            time.sleep(0.2)
    raise TestFailure(f"layerskipd at {address} not SERVING after {HEALTH_TIMEOUT_S} s (last: {last}); "
                      f"its log:\n{tail(log_path)}")


def reference_generate(address, token, max_tokens):
    """The harness's own greedy Generate: what the client must print."""
    import grpc
    from layerskip.v1 import layerskip_pb2 as pb, layerskip_pb2_grpc as pb_grpc
    md = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(address) as channel:
        try:
            return pb_grpc.LayerSkipStub(channel).Generate(
                pb.GenerateRequest(prompt=PROMPT, max_tokens=max_tokens), metadata=md, timeout=CLIENT_TIMEOUT_S)
        except grpc.RpcError as e:
            raise TestFailure(f"the harness's own Generate failed: {e.code().name}: {e.details()}")


def reference_chat(address, token):
    """the harness's own Chat of the question the examples ask"""
    import grpc
    from layerskip.v1 import layerskip_pb2 as pb, layerskip_pb2_grpc as pb_grpc
    md = [("authorization", "Bearer " + token)] if token else None
    req = pb.ChatRequest(messages=[pb.ChatMessage(role="system", content="You are a helpful assistant."),
                                   pb.ChatMessage(role="user", content="What is the capital of France?")],
                         options=pb.GenerateRequest(max_tokens=24))
    with grpc.insecure_channel(address) as channel:
        try:
            r = pb_grpc.LayerSkipStub(channel).Chat(req, metadata=md, timeout=CLIENT_TIMEOUT_S)
        except grpc.RpcError as e:
            raise TestFailure(f"the harness's own Chat failed: {e.code().name}: {e.details()}")
    if not r.text:
        raise TestFailure("the reference Chat returned empty text")
    return r


def check_example(cmd, address, token):
    full = cmd + ["--server", address] + (["--token", token] if token else [])
    out = run(full, CLIENT_TIMEOUT_S).stdout
    ref = reference_generate(address, token, 16)
    if not ref.text:
        raise TestFailure("the reference Generate returned empty text for a 16-token greedy request")
    ref_chat = reference_chat(address, token)
    for needle, why in ((f"stream: {ref.text}\n", "the streamed text (same greedy request)"),
                        ("model: ", "the GetModelInfo line"),
                        (f"generated_tokens={ref.stats.generated_tokens} ", "the final stats"),
                        ("ok: streamed text equals unary text", "the example's own check"),
                        (f"chat stream: {ref_chat.text}\n", "the ChatStream answer (same greedy conversation)"),
                        ("ok: chat stream equals unary chat", "the example's own Chat check")):
        if needle not in out:
            raise TestFailure(f"client output lacks {why}: expected {needle!r}")
    if token:
        # the example's error path: a wrong token must fail loudly, naming the status
        bad = run(cmd + ["--server", address, "--token", "wrong-" + token], CLIENT_TIMEOUT_S, check=False)
        if bad.returncode == 0 or "UNAUTHENTICATED" not in bad.stdout:
            raise TestFailure(f"with a wrong --token the client exited {bad.returncode} without naming UNAUTHENTICATED")


def check_grpcurl(grpcurl, address, token):
    base = [grpcurl, "-plaintext", "-max-time", str(CLIENT_TIMEOUT_S)]
    if token:
        base += ["-H", f"authorization: Bearer {token}"]
    # grpcurl's unix sockets: -unix and the path as the address
    target = address
    if address.startswith("unix:"):
        base += ["-unix"]
        target = address[len("unix:"):]
    listed = run(base + [target, "list"], 60).stdout.split()
    for svc in ("layerskip.v1.LayerSkip", "grpc.health.v1.Health"):
        if svc not in listed:
            raise TestFailure(f"`grpcurl list` (server reflection) lacks {svc}: {listed}")
    described = run(base + [target, "describe", "layerskip.v1.LayerSkip"], 60).stdout
    for rpc in ("rpc Generate ", "rpc GenerateStream ", "stream .layerskip.v1.GenerateChunk", "rpc GetModelInfo ",
                "rpc Chat ( .layerskip.v1.ChatRequest )", "rpc ChatStream "):
        if rpc not in described:
            raise TestFailure(f"`grpcurl describe layerskip.v1.LayerSkip` lacks {rpc!r}")
    msg = run(base + [target, "describe", "layerskip.v1.GenerateRequest"], 60).stdout
    if "max_tokens" not in msg:
        raise TestFailure("`grpcurl describe layerskip.v1.GenerateRequest` lacks max_tokens")
    out = run(base + ["-d", json.dumps({"prompt": PROMPT, "max_tokens": 8}), target,
                      "layerskip.v1.LayerSkip/Generate"], CLIENT_TIMEOUT_S).stdout
    try:
        reply = json.loads(out)
    except json.JSONDecodeError as e:
        raise TestFailure(f"grpcurl Generate did not print one JSON object ({e})")
    ref = reference_generate(address, token, 8)
    stats = reply.get("stats", {})
    if reply.get("text") != ref.text:
        raise TestFailure(f"grpcurl Generate text {reply.get('text')!r} != the same request from Python {ref.text!r}")
    if stats.get("generatedTokens") != ref.stats.generated_tokens or not stats.get("strategy"):
        raise TestFailure(f"grpcurl Generate stats lack generatedTokens={ref.stats.generated_tokens} or strategy: {stats}")
    if reply.get("finishReason", "FINISH_REASON_UNSPECIFIED") == "FINISH_REASON_UNSPECIFIED":
        raise TestFailure(f"grpcurl Generate reply has no finishReason: {reply}")
    # the stream prints one JSON object per chunk; their texts must add up to the unary text
    out = run(base + ["-d", json.dumps({"prompt": PROMPT, "max_tokens": 8}), target,
                      "layerskip.v1.LayerSkip/GenerateStream"], CLIENT_TIMEOUT_S).stdout
    chunks, pos, decoder = [], 0, json.JSONDecoder()
    try:
        while out[pos:].strip():
            pos += len(out[pos:]) - len(out[pos:].lstrip())
            chunk, pos = decoder.raw_decode(out, pos)
            chunks.append(chunk)
    except json.JSONDecodeError as e:
        raise TestFailure(f"grpcurl GenerateStream printed something other than JSON objects ({e})")
    streamed = "".join(c.get("text", "") for c in chunks)
    if not chunks or streamed != ref.text or "stats" not in chunks[-1] or "finishReason" not in chunks[-1]:
        raise TestFailure(f"grpcurl GenerateStream: {len(chunks)} chunks, text {streamed!r} (want {ref.text!r}), "
                          f"last chunk {chunks[-1] if chunks else None}")


def stop_daemon(daemon, log_path):
    daemon.send_signal(signal.SIGTERM)
    try:
        rc = daemon.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise TestFailure(f"layerskipd did not exit within {STOP_TIMEOUT_S} s of SIGTERM; its log:\n{tail(log_path)}")
    if rc != 0:
        raise TestFailure(f"layerskipd exited {rc} after SIGTERM (want 0); its log:\n{tail(log_path)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--client", required=True, choices=["python", "go", "node", "grpcurl"])
    ap.add_argument("--daemon", required=True, help="layerskipd")
    ap.add_argument("--model", required=True)
    ap.add_argument("--proto-py", required=True, help="stub dir (layerskip/v1, grpc_health/v1)")
    ap.add_argument("--proto-dir", required=True, help="source proto/ dir")
    ap.add_argument("--examples-dir", required=True, help="client/examples")
    ap.add_argument("--work-dir", required=True, help="build-tree dir for tools, copies and logs")
    ap.add_argument("--transport", choices=["tcp", "unix"], default="tcp")
    ap.add_argument("--token", action="store_true", help="start the daemon with --auth-token-file and pass --token")
    ap.add_argument("--go", default=shutil.which("go") or "/usr/local/go/bin/go")
    ap.add_argument("--protoc", default=shutil.which("protoc"))
    ap.add_argument("--node", default=shutil.which("node"))
    ap.add_argument("--npm", default=shutil.which("npm"))
    args = ap.parse_args()
    for name in ("daemon", "model", "proto_py", "proto_dir", "examples_dir", "work_dir"):
        setattr(args, name, os.path.abspath(getattr(args, name)))

    # SIGTERM from ctest's timeout: unwind through the finally blocks
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"[run_client_test] {args.client}: terminated"))
    sys.path.insert(0, args.proto_py)
    os.environ["PYTHONPATH"] = args.proto_py + os.pathsep + os.environ.get("PYTHONPATH", "")
    os.makedirs(args.work_dir, exist_ok=True)
    tmp = scratch_dir("client")  # short path: unix socket names are limited to 107 bytes
    daemon = None
    try:
        try:
            from grpc_health.v1 import health_pb2, health_pb2_grpc
            import grpc  # noqa: F401
        except ImportError as e:
            raise TestFailure(f"{sys.executable} cannot import the gRPC stubs from --proto-py {args.proto_py} "
                              f"({e}): build target ls_proto_python and use Debian's python3-grpcio")
        need_tool(args.daemon, "layerskipd (build target layerskipd)")
        if not os.path.isfile(args.model):
            raise TestFailure(f"model {args.model} not found: run scripts/setup.sh")

        t0 = time.monotonic()
        if args.client == "grpcurl":
            need_tool(args.go, "go (Go 1.26)")
            client = go_install(args, GRPCURL, "grpcurl")
        else:
            client = {"python": prepare_python, "go": prepare_go, "node": prepare_node}[args.client](args)
        log(f"client ready in {time.monotonic() - t0:.0f} s")

        address = f"unix:{tmp}/layerskipd.sock" if args.transport == "unix" else f"127.0.0.1:{free_port()}"
        token = None
        cmd = [args.daemon, "--model", args.model, "--listen", address, "--ctx", "512"]
        if args.token:
            token = "example-token-" + os.urandom(6).hex()
            token_file = os.path.join(tmp, "token")
            with open(token_file, "w") as f:
                f.write(token + "\n")
            os.chmod(token_file, 0o600)
            cmd += ["--auth-token-file", token_file]
        log_path = os.path.join(args.work_dir, f"{args.client}-daemon.log")
        log("$ " + " ".join(cmd) + f"  (log: {log_path})")
        with open(log_path, "w") as log_file:
            daemon = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                      preexec_fn=die_with_parent)
        wait_serving(daemon, address, log_path, (health_pb2, health_pb2_grpc))
        log(f"layerskipd SERVING at {address}")

        if args.client == "grpcurl":
            check_grpcurl(client, address, token)
        else:
            check_example(client, address, token)
        stop_daemon(daemon, log_path)
        log(f"{args.client}: passed")
        return 0
    except TestFailure as e:
        print(f"[run_client_test] FAIL ({args.client}): {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
