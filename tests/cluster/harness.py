#!/usr/bin/env python3
"""Fault-injection harness for reki's etcd cluster mode (Python 3 stdlib only).

It starts a 3-member etcd 3.4 cluster and reki-cluster-node processes on free
127.0.0.1 ports (each with its own data dir under a temp dir, removed at the
end), injects faults (kill -9 of nodes, SIGSTOP/SIGCONT, etcd leader kill,
etcd all down, graceful leave), measures takeover times from the node logs,
and at the end checks all logs with check_log.py (no two activations of a key
handle messages at overlapping times, tokens never go back).

    harness.py [--node-bin PATH] [--out DIR] [--scenarios a,b,..] [--repeat N]
               [--trials N] [--ttl S] [--shards N] [--keys N] [--rate N]
               [--short] [--max-seconds S]
    harness.py --etcd-only          # test of the etcd part alone

Scenarios: routing, kill9, sigstop, etcd_leader, etcd_down, join_leave.
A full run with at least 100 injections: --repeat 5 (24 per repetition with
the default 20 kill9 trials; one repetition takes ~3 min, so also pass
--max-seconds 1500).

Exit status: 0 all checks passed; 1 a violation or a failed scenario check
(or the --max-seconds deadline); 2 setup error (missing binary, etcd does not
start, ...); 128+N on signal N.

Every child gets PR_SET_PDEATHSIG=SIGKILL and its own session, and is
killed by pid when the harness ends (normally, on an exception, on
SIGINT/SIGTERM/SIGHUP or at the deadline).  Children are only spawned from
the main thread (PDEATHSIG fires when the spawning *thread* exits).
"""

import argparse
import atexit
import base64
import ctypes
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True   # leave no __pycache__ in the source tree
import check_log  # noqa: E402

NS = 1_000_000_000
MS = 1_000_000
ALL_SCENARIOS = ["routing", "kill9", "sigstop", "etcd_leader", "etcd_down",
                 "join_leave"]
BASE_NODES = ["n1", "n2", "n3"]
JOIN_NODE = "n4"
ETCD_NAMES = ["e1", "e2", "e3"]


def now_ns():
    """CLOCK_MONOTONIC in ns: the clock of the node logs."""
    return time.monotonic_ns()


_T0 = now_ns()


def log(msg):
    print("[%7.1fs] %s" % ((now_ns() - _T0) / NS, msg), flush=True)


class HarnessError(Exception):
    """Setup failure or a step that could not be carried out."""


class Aborted(BaseException):
    """Signal or overall deadline: unwind, clean up, exit."""

    def __init__(self, why, code):
        super().__init__(why)
        self.why = why
        self.code = code


# ---------------------------------------------------------------------------
# child processes

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _make_preexec(parent_pid):
    def preexec():
        # Die with the harness, even if it is killed with SIGKILL.
        if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent_pid:  # harness died before prctl
            os._exit(126)
    return preexec


class Child:
    """One child process, addressed by its pid only."""

    def __init__(self, name, argv, popen):
        self.name = name
        self.argv = argv
        self.popen = popen
        self.pid = popen.pid
        self.started_ns = now_ns()

    def alive(self):
        return self.popen.poll() is None

    def returncode(self):
        return self.popen.poll()

    def signal(self, sig):
        # Popen.send_signal does nothing once the pid has been reaped, so a
        # recycled pid is never hit.
        self.popen.send_signal(sig)

    def wait(self, timeout):
        """Wait for exit; returns the exit status or None on timeout."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill9(self, timeout=10.0):
        self.signal(signal.SIGKILL)
        rc = self.wait(timeout)
        if rc is None:
            raise HarnessError("%s (pid %d) did not die on SIGKILL"
                               % (self.name, self.pid))
        return rc


class Children:
    """Registry of every process the harness started."""

    def __init__(self):
        self.all = []
        self.parent = os.getpid()

    def spawn(self, name, argv, stdout_path, stderr_path, cwd=None, env=None):
        out = open(stdout_path, "ab")
        err = out if stderr_path == stdout_path else open(stderr_path, "ab")
        try:
            popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                cwd=cwd, env=env, close_fds=True, start_new_session=True,
                preexec_fn=_make_preexec(self.parent))
        except OSError as e:
            raise HarnessError("cannot start %s (%s): %s"
                               % (name, argv[0], e))
        finally:
            out.close()
            if err is not out:
                err.close()
        child = Child(name, argv, popen)
        self.all.append(child)
        return child

    def kill_all(self):
        """SIGKILL every live child by pid and reap it."""
        for c in self.all:
            if c.alive():
                try:
                    c.signal(signal.SIGKILL)
                except OSError:
                    pass
        for c in self.all:
            c.wait(5.0)


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (held open until all found)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def tail(path, nbytes=2000):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - nbytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def sleep_for(seconds):
    if seconds > 0:
        time.sleep(seconds)


# ---------------------------------------------------------------------------
# etcd

# Requests to 127.0.0.1 must never go through an http_proxy from the env.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_json(url, body=None, timeout=2.0):
    """GET (body None) or POST JSON; returns the decoded JSON or raises."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with _http.open(req, timeout=timeout) as r:
        return json.loads(r.read().decode() or "{}")


class EtcdMember:
    def __init__(self, name, client_port, peer_port, data_dir, log_path):
        self.name = name
        self.client_port = client_port
        self.peer_port = peer_port
        self.data_dir = data_dir
        self.log_path = log_path
        self.child = None
        self.member_id = None   # learnt from its status

    @property
    def client_url(self):
        return "http://127.0.0.1:%d" % self.client_port

    @property
    def peer_url(self):
        return "http://127.0.0.1:%d" % self.peer_port

    def running(self):
        return self.child is not None and self.child.alive()


class EtcdCluster:
    """A 3-member etcd cluster on 127.0.0.1, one process per member."""

    def __init__(self, children, etcd_bin, tmp, out, ports, token):
        self.children = children
        self.etcd_bin = etcd_bin
        self.token = token
        self.members = {}
        for i, name in enumerate(ETCD_NAMES):
            self.members[name] = EtcdMember(
                name, ports[2 * i], ports[2 * i + 1],
                os.path.join(tmp, "etcd", name),
                os.path.join(out, "%s.log" % name))
        self.initial_cluster = ",".join(
            "%s=%s" % (m.name, m.peer_url) for m in self.members.values())
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("ETCD")}
        if os.uname().machine not in ("x86_64", "amd64"):
            env["ETCD_UNSUPPORTED_ARCH"] = {"aarch64": "arm64"}.get(
                os.uname().machine, os.uname().machine)
        self.env = env

    @property
    def endpoints(self):
        return ",".join(m.client_url for m in self.members.values())

    def alive_names(self):
        return [n for n, m in self.members.items() if m.running()]

    # -- processes -------------------------------------------------------
    def start_member(self, name, state):
        m = self.members[name]
        if m.running():
            raise HarnessError("etcd %s is already running" % name)
        os.makedirs(m.data_dir, exist_ok=True)
        argv = [self.etcd_bin,
                "--name", name,
                "--data-dir", m.data_dir,
                "--listen-client-urls", m.client_url,
                "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", m.peer_url,
                "--initial-advertise-peer-urls", m.peer_url,
                "--initial-cluster", self.initial_cluster,
                "--initial-cluster-state", state,
                "--initial-cluster-token", self.token,
                "--logger", "zap", "--log-outputs", "stderr"]
        with open(m.log_path, "ab") as f:
            f.write(("\n=== harness: start %s (%s) at %.3f\n"
                     % (name, state, now_ns() / NS)).encode())
        m.child = self.children.spawn("etcd-" + name, argv, m.log_path,
                                      m.log_path, cwd=m.data_dir, env=self.env)
        return m.child

    def start_all(self, state):
        for name in self.members:
            self.start_member(name, state)

    def kill9(self, name):
        m = self.members[name]
        if not m.running():
            raise HarnessError("etcd %s is not running" % name)
        m.child.kill9()

    def restart(self, name, timeout=30.0):
        """Restart a dead member with its data dir; wait until healthy."""
        self.start_member(name, "existing")
        self.wait_healthy([name], timeout)

    def stop_all(self, timeout=15.0):
        """Graceful stop (SIGTERM), SIGKILL after the timeout.

        Followers go first: a leader stopped while its followers are going
        down waits up to 7 s for a leadership transfer that cannot happen."""
        leader = self.leader_once()
        running = [m for m in self.members.values() if m.running()]
        waves = [[m for m in running if m.name != leader],
                 [m for m in running if m.name == leader]]
        deadline = time.monotonic() + timeout
        for wave in waves:
            for m in wave:
                m.child.signal(signal.SIGTERM)
            for m in wave:
                if m.child.wait(max(0.1, deadline - time.monotonic())) is None:
                    log("etcd %s did not stop on SIGTERM; SIGKILL" % m.name)
                    m.child.kill9()

    def kill_all(self):
        for m in self.members.values():
            if m.running():
                m.child.kill9()

    def restart_all(self, timeout=30.0):
        for name, m in self.members.items():
            if not m.running():
                self.start_member(name, "existing")
        self.wait_healthy(list(self.members), timeout)

    # -- queries ---------------------------------------------------------
    def healthy(self, name):
        m = self.members[name]
        if not m.running():
            return False
        try:
            h = http_json(m.client_url + "/health", timeout=1.0)
        except (OSError, ValueError):
            return False
        return str(h.get("health")) == "true"

    def wait_healthy(self, names, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            bad = [n for n in names if not self.healthy(n)]
            if not bad:
                return
            for n in bad:
                if not self.members[n].running():
                    raise HarnessError(
                        "etcd %s exited (status %s); log tail:\n%s"
                        % (n, self.members[n].child.returncode(),
                           tail(self.members[n].log_path)))
            if time.monotonic() > deadline:
                raise HarnessError("etcd %s not healthy after %.0f s"
                                   % (",".join(bad), timeout))
            sleep_for(0.2)

    def status(self, name):
        """Maintenance status of one member, or None."""
        m = self.members[name]
        if not m.running():
            return None
        try:
            st = http_json(m.client_url + "/v3/maintenance/status", {},
                           timeout=1.0)
        except (OSError, ValueError):
            return None
        hdr = st.get("header", {})
        mid = hdr.get("member_id", hdr.get("memberId"))
        if mid is not None:
            m.member_id = int(mid)
        return st

    def leader_once(self):
        """Leader name if every live member agrees on one live leader."""
        seen = set()
        for name in self.alive_names():
            st = self.status(name)
            if st is None or not int(st.get("leader", 0) or 0):
                return None
            seen.add(int(st["leader"]))
        if len(seen) != 1:
            return None
        lid = seen.pop()
        for name, m in self.members.items():
            if m.member_id == lid and m.running():
                return name
        return None

    def leader(self, timeout=15.0, not_name=None):
        deadline = time.monotonic() + timeout
        while True:
            name = self.leader_once()
            if name is not None and name != not_name:
                return name
            if time.monotonic() > deadline:
                raise HarnessError("no etcd leader%s agreed on within %.0f s"
                                   % (" other than %s" % not_name
                                      if not_name else "", timeout))
            sleep_for(0.2)

    def put(self, key, value, name=None):
        m = self.members[name or self.alive_names()[0]]
        http_json(m.client_url + "/v3/kv/put",
                  {"key": _b64(key), "value": _b64(value)}, timeout=5.0)

    def get(self, key, name=None):
        m = self.members[name or self.alive_names()[0]]
        r = http_json(m.client_url + "/v3/kv/range", {"key": _b64(key)},
                      timeout=5.0)
        kvs = r.get("kvs") or []
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


def _b64(s):
    return base64.b64encode(s.encode()).decode()


# ---------------------------------------------------------------------------
# reki nodes

class Node:
    def __init__(self, name, port, out, tmp):
        self.name = name
        self.port = port
        self.log_path = os.path.join(out, "%s.log" % name)
        self.stdout_path = os.path.join(out, "%s.stdout" % name)
        self.stderr_path = os.path.join(out, "%s.stderr" % name)
        self.dir = os.path.join(tmp, "nodes", name)
        self.child = None
        self.ospid = None
        self.incarnations = 0
        self.expect_running = False   # False while killed/leaving on purpose

    def running(self):
        return self.child is not None and self.child.alive()


class Nodes:
    def __init__(self, children, args, etcd_endpoints, out, tmp, ports):
        self.children = children
        self.args = args
        self.etcd_endpoints = etcd_endpoints
        names = BASE_NODES + [JOIN_NODE]
        self.nodes = {n: Node(n, p, out, tmp) for n, p in zip(names, ports)}

    def __getitem__(self, name):
        return self.nodes[name]

    def log_paths(self):
        return [n.log_path for n in self.nodes.values()]

    def start(self, name):
        """Start a node under its name and wait for its ready line."""
        a = self.args
        n = self.nodes[name]
        if n.running():
            raise HarnessError("node %s is already running" % name)
        os.makedirs(n.dir, exist_ok=True)
        argv = [a.node_bin, "--etcd", self.etcd_endpoints, "--node", name,
                "--listen", "127.0.0.1:%d" % n.port, "--log", n.log_path,
                "--shards", str(a.shards), "--ttl", str(a.ttl),
                "--keys", str(a.keys), "--rate", str(a.rate),
                "--prefix", a.prefix] + shlex.split(a.node_extra)
        try:
            offset = os.path.getsize(n.stdout_path)
        except OSError:
            offset = 0
        with open(n.stderr_path, "ab") as f:
            f.write(("=== harness: start %s at %.3f\n"
                     % (name, now_ns() / NS)).encode())
        n.child = self.children.spawn(name, argv, n.stdout_path,
                                      n.stderr_path, cwd=n.dir)
        n.incarnations += 1
        n.expect_running = True
        n.ospid = self._wait_ready(n, offset)
        return n

    def _wait_ready(self, n, offset):
        deadline = time.monotonic() + self.args.ready_timeout
        want = ("ready %s " % n.name).encode()
        while True:
            try:
                with open(n.stdout_path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except OSError:
                data = b""
            for line in data.split(b"\n")[:-1]:   # complete lines only
                if line.startswith(want):
                    try:
                        ospid = int(line.split()[2])
                    except (IndexError, ValueError):
                        raise HarnessError("bad ready line from %s: %r"
                                           % (n.name, line))
                    if ospid != n.child.pid:
                        log("note: %s says ospid %d, its pid is %d"
                            % (n.name, ospid, n.child.pid))
                    return ospid
            if not n.child.alive():
                n.expect_running = False
                raise HarnessError(
                    "node %s exited (status %s) before ready; stderr tail:\n%s"
                    % (n.name, n.child.returncode(), tail(n.stderr_path)))
            if time.monotonic() > deadline:
                raise HarnessError("node %s not ready after %.0f s; stderr "
                                   "tail:\n%s" % (n.name,
                                                  self.args.ready_timeout,
                                                  tail(n.stderr_path)))
            sleep_for(0.05)

    def kill9(self, name):
        n = self.nodes[name]
        n.expect_running = False
        n.child.kill9()

    def kill_all(self):
        for n in self.nodes.values():
            if n.running():
                n.expect_running = False
                n.child.kill9()


# ---------------------------------------------------------------------------
# reading node logs while they grow

class LogWatch:
    """Follows the node logs and keeps recent H records in memory.

    events: list of (t_ns, key, node, ospid), in read order (not sorted)."""

    def __init__(self, paths):
        self.files = {p: 0 for p in paths}   # path -> offset of next line
        self.events = []
        self.bad_lines = 0

    def poll(self):
        for path, off in self.files.items():
            try:
                with open(path, "rb") as f:
                    f.seek(off)
                    data = f.read(64 << 20)
            except OSError:
                continue
            end = data.rfind(b"\n")
            if end < 0:
                continue
            self.files[path] = off + end + 1
            ev = self.events
            for line in data[:end].split(b"\n"):
                if line[:2] != b"H ":
                    continue
                p = line.split()
                try:
                    ev.append((int(p[6]), p[1].decode(), p[2].decode(),
                               int(p[3])))
                except (IndexError, ValueError, UnicodeDecodeError):
                    self.bad_lines += 1

    def trim(self, keep_ns=30 * NS):
        cut = now_ns() - keep_ns
        self.events = [e for e in self.events if e[0] >= cut]

    def window(self, t0=None, t1=None, nodes=None, exclude=None):
        """H records with t0 < t <= t1 (bounds optional), filtered by node."""
        out = []
        for e in self.events:
            t = e[0]
            if t0 is not None and t <= t0:
                continue
            if t1 is not None and t > t1:
                continue
            if nodes is not None and e[2] not in nodes:
                continue
            if exclude is not None and e[2] in exclude:
                continue
            out.append(e)
        return out

    def last_before(self, t):
        """key -> (t, node, ospid) of its last H at or before t."""
        last = {}
        for e in self.events:
            if e[0] <= t:
                cur = last.get(e[1])
                if cur is None or e[0] > cur[0]:
                    last[e[1]] = (e[0], e[2], e[3])
        return last


# ---------------------------------------------------------------------------
# scenario bookkeeping

def percentile(values, p):
    """Nearest-rank percentile of a non-empty list."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, -(-len(v) * p // 100) - 1))
    return v[int(k)]


class ScenarioRun:
    def __init__(self, name, rep):
        self.name = name
        self.rep = rep
        self.t_start = None
        self.t_end = None
        self.injections = 0
        self.ok = True
        self.checks = []     # (ok, text)
        self.figures = []    # short texts for the summary table

    @property
    def label(self):
        return "%s#%d" % (self.name, self.rep)

    def check(self, cond, text):
        self.checks.append((bool(cond), text))
        log("%s %s: %s" % ("  ok  " if cond else "  FAIL", self.label, text))
        if not cond:
            self.ok = False
        return cond

    def figure(self, text):
        self.figures.append(text)
        log("  ..  %s: %s" % (self.label, text))


class Timing:
    """Waits of the scenarios (seconds); --short shortens them."""

    def __init__(self, short, ttl):
        self.routing = 3.0 if short else 5.0
        self.kill9_down = ttl + 3.0
        self.kill9_after = 1.0 if short else 2.0
        self.stop_for = ttl + 2.0
        self.after_cont = 2.0 if short else 3.0
        self.leader_wait = 3.0 if short else 5.0
        self.down_for = ttl + 2.0
        self.recover = 15.0
        self.join_wait = 3.0 if short else 5.0
        self.after_leave = 2.0 if short else 3.0
        self.leave_timeout = max(30.0, 10.0 * ttl)
        self.warmup = 30.0

    def estimate(self, args):
        """Rough run time in seconds (measured: ~190 s for one default
        repetition), to warn when --max-seconds is too small."""
        per = {"routing": self.routing + 1,
               "kill9": args.trials * (self.kill9_down + self.kill9_after
                                       + 1.5),
               "sigstop": self.stop_for + self.after_cont + 1,
               "etcd_leader": self.leader_wait + 2,
               "etcd_down": self.down_for + 7,
               "join_leave": self.join_wait + self.after_leave + 3}
        return 10 + args.repeat * sum(per[s] for s in args.scenarios)


# ---------------------------------------------------------------------------
# the harness

class Harness:
    def __init__(self, args):
        self.args = args
        self.children = Children()
        self.tmp = tempfile.mkdtemp(prefix="reki-cluster.")
        self.out = args.out
        os.makedirs(self.out, exist_ok=True)
        self.timing = Timing(args.short, args.ttl)
        self.runs = []
        self.current = None
        self.total_injections = 0
        self.rr = 0
        self.unexpected_outside = False   # a node died between scenarios
        ports = free_ports(2 * len(ETCD_NAMES) + len(BASE_NODES) + 1)
        token = "reki-test-%d-%d" % (os.getpid(), time.time_ns())
        self.etcd = EtcdCluster(self.children, args.etcd_bin, self.tmp,
                                self.out, ports[:6], token)
        self.nodes = None
        if not args.etcd_only:
            self.nodes = Nodes(self.children, args, self.etcd.endpoints,
                               self.out, self.tmp, ports[6:])
            self.watch = LogWatch(self.nodes.log_paths())
            self.all_keys = set("k%d" % i for i in range(args.keys))
        self._clean_out()

    def _clean_out(self):
        """Remove what an earlier run left in the out dir (files we own)."""
        names = ["summary.txt"] + ["%s.log" % e for e in ETCD_NAMES]
        for n in BASE_NODES + [JOIN_NODE]:
            names += ["%s.log" % n, "%s.stdout" % n, "%s.stderr" % n]
        for n in names:
            try:
                os.unlink(os.path.join(self.out, n))
            except FileNotFoundError:
                pass
        if self.nodes is not None:
            for p in self.nodes.log_paths():
                open(p, "ab").close()

    def cleanup(self):
        self.children.kill_all()
        if self.args.keep_tmp:
            log("kept temp dir %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- waiting ---------------------------------------------------------
    def wait(self, seconds):
        """Sleep while following the logs and watching for node deaths."""
        end = time.monotonic() + seconds
        while True:
            self.poll()
            left = end - time.monotonic()
            if left <= 0:
                return
            sleep_for(min(0.25, left))

    def poll(self):
        if self.nodes is None:
            return
        self.watch.poll()
        for n in self.nodes.nodes.values():
            if n.expect_running and n.child is not None and not n.child.alive():
                n.expect_running = False
                msg = ("node %s (pid %d) exited unexpectedly, status %s"
                       % (n.name, n.child.pid, n.child.returncode()))
                if self.current is not None:
                    self.current.check(False, msg)
                else:
                    log("FAIL " + msg)
                    self.unexpected_outside = True

    def wait_keys(self, t0, nodes, timeout, keys=None):
        """Wait until every key has an H after t0 by one of nodes.

        Returns (missing keys, ns from t0 to the moment the last key was
        handled or None)."""
        keys = self.all_keys if keys is None else set(keys)
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            first = {}
            for t, key, node, _ in self.watch.window(t0, nodes=nodes):
                if key in keys and (key not in first or t < first[key]):
                    first[key] = t
            missing = keys - set(first)
            if not missing:
                return set(), max(first.values()) - t0 if first else 0
            if time.monotonic() > deadline:
                return missing, None
            sleep_for(0.2)

    def count_by_node(self, t0, t1):
        counts = {}
        for _, _, node, _ in self.watch.window(t0, t1):
            counts[node] = counts.get(node, 0) + 1
        return counts

    def next_victim(self):
        v = BASE_NODES[self.rr % len(BASE_NODES)]
        self.rr += 1
        return v

    def inject(self, sr, what):
        sr.injections += 1
        self.total_injections += 1
        log("inject #%d: %s" % (self.total_injections, what))

    # -- baseline ----------------------------------------------------------
    def start_cluster(self):
        log("starting etcd %s" % self.etcd.endpoints)
        self.etcd.start_all("new")
        self.etcd.wait_healthy(ETCD_NAMES, 60.0)
        log("etcd healthy, leader %s" % self.etcd.leader())

    def start_nodes(self):
        for name in BASE_NODES:
            n = self.nodes.start(name)
            log("node %s ready, pid %d, port %d" % (name, n.ospid, n.port))

    def ensure_baseline(self, sr):
        """All etcd members healthy, n1..n3 running, n4 down, keys served."""
        for name, m in self.etcd.members.items():
            if not m.running():
                log("baseline: restarting etcd %s" % name)
                self.etcd.start_member(name, "existing")
        self.etcd.wait_healthy(ETCD_NAMES, 60.0)
        if self.nodes[JOIN_NODE].running():
            self.nodes.kill9(JOIN_NODE)
        for name in BASE_NODES:
            if not self.nodes[name].running():
                log("baseline: restarting node %s" % name)
                self.nodes.start(name)
        t0 = now_ns()
        missing, _ = self.wait_keys(t0, None, self.timing.warmup)
        if missing:
            raise HarnessError("baseline: %d keys not handled within %.0f s "
                               "(e.g. %s)" % (len(missing), self.timing.warmup,
                                              sorted(missing)[:5]))
        self.watch.trim()

    # -- scenarios -----------------------------------------------------------
    def run_scenarios(self):
        names = self.args.scenarios
        for rep in range(1, self.args.repeat + 1):
            for name in names:
                sr = ScenarioRun(name, rep)
                self.runs.append(sr)
                log("=== scenario %s" % sr.label)
                sr.t_start = now_ns()
                self.current = sr
                try:
                    self.ensure_baseline(sr)
                    getattr(self, "sc_" + name)(sr)
                except HarnessError as e:
                    sr.check(False, "error: %s" % e)
                except Exception as e:  # a bug in the harness: report it
                    traceback.print_exc()
                    sr.check(False, "harness exception: %r" % e)
                finally:
                    self.poll()
                    self.current = None
                    sr.t_end = now_ns()
                log("=== scenario %s: %s" % (sr.label,
                                             "PASS" if sr.ok else "FAIL"))

    def sc_routing(self, sr):
        t0 = now_ns()
        self.wait(self.timing.routing)
        t1 = now_ns()
        counts = self.count_by_node(t0, t1)
        secs = (t1 - t0) / NS
        for name in BASE_NODES:
            sr.check(counts.get(name, 0) > 0, "node %s handled messages (%d)"
                     % (name, counts.get(name, 0)))
        handled = set(e[1] for e in self.watch.window(t0, t1))
        missing = self.all_keys - handled
        sr.check(not missing, "every key handled somewhere (%d/%d)"
                 % (len(self.all_keys) - len(missing), len(self.all_keys)))
        sr.figure("H/s " + " ".join("%s=%.0f" % (n, counts.get(n, 0) / secs)
                                    for n in BASE_NODES))

    def takeover(self, victim, ospid, t_fault, t_until):
        """Takeover of a victim's keys by other nodes after t_fault.

        Returns (victim keys, {key: ns to first H elsewhere}, keys never
        taken over before t_until)."""
        last = self.watch.last_before(t_fault)
        vkeys = set(k for k, (t, node, pid) in last.items()
                    if node == victim and pid == ospid)
        first = {}
        for t, key, node, _ in self.watch.window(t_fault, t_until,
                                                 exclude=(victim,)):
            if key in vkeys and (key not in first or t < first[key]):
                first[key] = t
        took = {k: first[k] - t_fault for k in first}
        return vkeys, took, vkeys - set(first)

    def sc_kill9(self, sr):
        a, tm = self.args, self.timing
        bound = (a.ttl + 1) * NS
        per_trial = []
        for trial in range(1, a.trials + 1):
            self.watch.trim()
            victim = self.next_victim()
            n = self.nodes[victim]
            ospid = n.ospid
            self.poll()
            t_kill = now_ns()
            self.nodes.kill9(victim)
            self.inject(sr, "kill -9 %s (pid %d), trial %d"
                        % (victim, ospid, trial))
            self.wait(tm.kill9_down)
            t_restart = now_ns()
            self.nodes.start(victim)
            self.wait(tm.kill9_after)
            vkeys, took, never = self.takeover(victim, ospid, t_kill,
                                               t_restart)
            if not vkeys:
                sr.figure("trial %d: %s had no keys before the kill"
                          % (trial, victim))
                continue
            sr.check(not never, "trial %d: all %d keys of %s taken over "
                     "before its restart (%d not)"
                     % (trial, len(vkeys), victim, len(never)))
            if took:
                worst = max(took.values())
                per_trial.append(worst)
                log("  ..  trial %d: %s had %d keys, takeover max %.0f ms"
                    % (trial, victim, len(vkeys), worst / MS))
        if per_trial:
            p50, p99 = percentile(per_trial, 50), percentile(per_trial, 99)
            mx = max(per_trial)
            sr.takeover = (p50, p99, mx)
            sr.figure("takeover p50=%.0f p99=%.0f max=%.0f ms (TTL+1s=%.0f ms)"
                      % (p50 / MS, p99 / MS, mx / MS, bound / MS))
            sr.check(p99 <= bound, "takeover p99 %.0f ms <= TTL+1s %.0f ms"
                     % (p99 / MS, bound / MS))
        else:
            sr.check(False, "no trial measured a takeover")

    def sc_sigstop(self, sr):
        tm = self.timing
        victim = self.next_victim()
        n = self.nodes[victim]
        ospid = n.ospid
        self.poll()
        t_stop = now_ns()
        n.child.signal(signal.SIGSTOP)
        self.inject(sr, "SIGSTOP %s (pid %d)" % (victim, ospid))
        try:
            self.wait(tm.stop_for)
        finally:
            t_cont = now_ns()
            n.child.signal(signal.SIGCONT)
        self.wait(tm.after_cont)
        t_end = now_ns()
        sr.check(n.running(), "%s still running after SIGCONT" % victim)
        resumed = self.watch.window(t_cont, t_cont + NS, nodes=(victim,))
        sr.figure("%s wrote %d H lines in the 1 s after SIGCONT"
                  % (victim, len(resumed)))
        during = set(e[1] for e in self.watch.window(t_stop, t_cont,
                                                     exclude=(victim,)))
        after = set(e[1] for e in self.watch.window(t_cont, t_end,
                                                    nodes=(victim,)))
        both = during & after
        # Allowed only if the victim lost and re-claimed them: the overlap
        # check decides.
        sr.figure("%d keys handled elsewhere during the stop were handled "
                  "by %s after SIGCONT" % (len(both), victim))
        vkeys, took, never = self.takeover(victim, ospid, t_stop, t_cont)
        if vkeys:
            sr.figure("%d/%d keys of %s taken over during the stop%s"
                      % (len(took), len(vkeys), victim,
                         ", max %.0f ms" % (max(took.values()) / MS)
                         if took else ""))

    def sc_etcd_leader(self, sr):
        tm = self.timing
        leader = self.etcd.leader()
        t_kill = now_ns()
        self.etcd.kill9(leader)
        self.inject(sr, "kill -9 etcd leader %s" % leader)
        try:
            new = self.etcd.leader(timeout=10.0, not_name=leader)
            sr.check(True, "new etcd leader %s" % new)
            sr.figure("etcd leader %s killed, %s elected after %.0f ms"
                      % (leader, new, (now_ns() - t_kill) / MS))
        except HarnessError as e:
            sr.check(False, str(e))
        self.wait(max(0.0, tm.leader_wait - (now_ns() - t_kill) / NS))
        t1 = now_ns()
        counts = self.count_by_node(t1 - 2 * NS, t1)
        for name in BASE_NODES:
            sr.check(counts.get(name, 0) > 0, "%s handled messages in the "
                     "last 2 s (%d)" % (name, counts.get(name, 0)))
        self.etcd.restart(leader)
        log("etcd %s restarted" % leader)

    def sc_etcd_down(self, sr):
        tm, a = self.timing, self.args
        self.poll()
        t_down = now_ns()
        self.etcd.kill_all()
        self.inject(sr, "kill -9 all etcd members")
        self.wait(tm.down_for)
        t_restart = now_ns()
        limit = t_down + a.ttl * NS + NS // 2
        late = self.watch.window(limit, t_restart)
        per = {}
        for e in late:
            per[e[2]] = per.get(e[2], 0) + 1
        sr.check(not late, "no H later than t_down+TTL+0.5s while etcd is "
                 "down (%s)" % (", ".join("%s=%d" % kv for kv in
                                          sorted(per.items())) or "none"))
        lasts = {}
        for t, _, node, _ in self.watch.window(t_down, t_restart):
            lasts[node] = max(lasts.get(node, t), t)
        sr.figure("last H after etcd down: " + (" ".join(
            "%s=+%.0fms" % (nd, (t - t_down) / MS)
            for nd, t in sorted(lasts.items())) or "none"))
        self.etcd.restart_all(timeout=30.0)
        log("etcd restarted")
        missing, dt = self.wait_keys(t_restart, None, tm.recover)
        sr.check(not missing, "every key handled within %.0f s of the etcd "
                 "restart (%d missing)" % (tm.recover, len(missing)))
        if dt is not None:
            sr.figure("all keys handled again %.0f ms after restart"
                      % (dt / MS))

    def sc_join_leave(self, sr):
        tm, a = self.timing, self.args
        n4 = self.nodes.start(JOIN_NODE)
        t_join = now_ns()
        log("node %s ready, pid %d" % (JOIN_NODE, n4.ospid))
        self.wait(tm.join_wait)
        mine = self.watch.window(t_join, None, nodes=(JOIN_NODE,))
        sr.check(mine, "%s handled messages after joining (%d H, %d keys)"
                 % (JOIN_NODE, len(mine), len(set(e[1] for e in mine))))
        self.poll()
        t_leave = now_ns()
        n4.expect_running = False
        n4.child.signal(signal.SIGTERM)
        self.inject(sr, "SIGTERM %s (graceful leave)" % JOIN_NODE)
        rc = n4.child.wait(tm.leave_timeout)
        t_exit = now_ns()
        if rc is None:
            sr.check(False, "%s did not exit within %.0f s of SIGTERM"
                     % (JOIN_NODE, tm.leave_timeout))
            self.nodes.kill9(JOIN_NODE)
        else:
            sr.check(rc == 0, "%s exited with status %d, %.0f ms after "
                     "SIGTERM" % (JOIN_NODE, rc, (t_exit - t_leave) / MS))
        self.wait(tm.after_leave)
        missing, _ = self.wait_keys(t_leave, BASE_NODES,
                                    max(1.0, 20.0 * a.keys / a.rate))
        sr.check(not missing, "every key handled by %s after the leave "
                 "(%d missing)" % (",".join(BASE_NODES), len(missing)))
        # Gap of each key n4 handled: its last H on n4 to the first H on
        # another node after that.
        last4 = {}
        for t, key, _, _ in self.watch.window(t_join, None,
                                              nodes=(JOIN_NODE,)):
            last4[key] = max(last4.get(key, t), t)
        first = {}
        for t, key, node, _ in self.watch.window(t_join, None,
                                                 exclude=(JOIN_NODE,)):
            if key in last4 and t > last4[key]:
                first[key] = min(first.get(key, t), t)
        gaps = [first[k] - last4[k] for k in first]
        thresh = max(0.25 * NS, int(6 * NS * a.keys / a.rate))
        if gaps:
            sr.figure("leave: %d keys moved off %s, %d with a gap > %.0f ms, "
                      "longest %.0f ms" % (len(gaps), JOIN_NODE,
                                          sum(g > thresh for g in gaps),
                                          thresh / MS, max(gaps) / MS))
        self.poll()

    # -- the end -----------------------------------------------------------
    def final_check(self):
        self.nodes.kill_all()
        paths = [p for p in self.nodes.log_paths()
                 if os.path.exists(p) and os.path.getsize(p) > 0]
        log("checking %d logs" % len(paths))
        res = check_log.check_files(paths)
        # Attribute each violation to the scenario run it happened in.
        for v in res.violations:
            if v.t is None:
                continue
            for sr in self.runs:
                if sr.t_start is not None and sr.t_start <= v.t <= (
                        sr.t_end or v.t):
                    sr.ok = False
                    sr.checks.append((False, str(v)))
                    break
        return res

    def summary(self, res, aborted=None):
        lines = ["", "=== summary (TTL %ss, shards %d, keys %d, rate %d)"
                 % (self.args.ttl, self.args.shards, self.args.keys,
                    self.args.rate),
                 "%-16s %4s  %-6s %s" % ("scenario", "inj", "result",
                                         "figures")]
        for sr in self.runs:
            figs = sr.figures or ["-"]
            if sr.name == "kill9" and getattr(sr, "takeover", None):
                figs = [f for f in figs if f.startswith("takeover")]
            lines.append("%-16s %4d  %-6s %s" % (sr.label, sr.injections,
                                                 "PASS" if sr.ok else "FAIL",
                                                 figs[0]))
            for f in figs[1:]:
                lines.append("%-16s %4s  %-6s %s" % ("", "", "", f))
            failed = [text for ok, text in sr.checks if not ok]
            for text in failed[:5]:
                if len(text) > 300:
                    text = text[:300] + "..."
                lines.append("%-16s %4s  %-6s ! %s" % ("", "", "", text))
            if len(failed) > 5:
                lines.append("%-16s %4s  %-6s ! ... %d more failed checks"
                             % ("", "", "", len(failed) - 5))
        target = "" if self.total_injections >= 100 else \
            " (a full run needs >= 100: use --repeat)"
        lines.append("total injections: %d%s" % (self.total_injections,
                                                target))
        if res is not None:
            lines.append("log check: " + res.summary().replace(
                "\n", "\n           "))
        if aborted:
            lines.append("ABORTED: %s" % aborted)
        ok = (aborted is None and res is not None and res.ok
              and all(sr.ok for sr in self.runs)
              and not self.unexpected_outside)
        lines.append("HARNESS RESULT: %s" % ("PASS" if ok else "FAIL"))
        text = "\n".join(lines)
        print(text, flush=True)
        try:
            with open(os.path.join(self.out, "summary.txt"), "w") as f:
                f.write(text + "\n")
        except OSError:
            pass
        return ok

    # -- etcd-only self test -------------------------------------------------
    def etcd_only(self):
        e = self.etcd
        self.start_cluster()
        e.put("/reki-test/probe", "v1")
        leader = e.leader()
        log("leader is %s; kill -9 it" % leader)
        t0 = now_ns()
        e.kill9(leader)
        new = e.leader(timeout=15.0, not_name=leader)
        log("new leader %s elected after %.0f ms" % (new, (now_ns() - t0) / MS))
        if new == leader or not e.members[new].running():
            raise HarnessError("bad new leader %s" % new)
        e.put("/reki-test/probe", "v2")
        e.restart(leader)
        log("%s restarted and healthy; leader %s" % (leader, e.leader()))
        e.wait_healthy(ETCD_NAMES)
        e.stop_all()
        if e.alive_names():
            raise HarnessError("still running after stop: %s"
                               % e.alive_names())
        log("all members stopped")
        e.restart_all(timeout=60.0)
        log("all members restarted and healthy; leader %s" % e.leader())
        for name in ETCD_NAMES:
            v = e.get("/reki-test/probe", name)
            if v != "v2":
                raise HarnessError("%s: probe key is %r after restart, "
                                   "expected 'v2'" % (name, v))
        log("probe key kept across restart on all members")
        e.stop_all()
        log("etcd-only: PASS")


# ---------------------------------------------------------------------------

def parse_args(argv):
    repo = os.path.dirname(os.path.dirname(HERE))
    ap = argparse.ArgumentParser(
        description="Fault-injection harness for reki cluster mode.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--node-bin", default=os.path.join(
        repo, "build", "tests", "cluster", "reki-cluster-node"))
    ap.add_argument("--node-extra", default="",
                    help="extra arguments for every node (shell words)")
    ap.add_argument("--etcd-bin", default="etcd")
    ap.add_argument("--out", default=None,
                    help="dir for logs (kept); default /tmp/reki-cluster-out-*")
    ap.add_argument("--scenarios", default=",".join(ALL_SCENARIOS))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--trials", type=int, default=None,
                    help="kill9 trials (default 20, 3 with --short)")
    ap.add_argument("--ttl", type=int, default=2)
    ap.add_argument("--shards", type=int, default=64)
    ap.add_argument("--keys", type=int, default=128)
    ap.add_argument("--rate", type=int, default=1500)
    ap.add_argument("--prefix", default=None,
                    help="etcd key prefix (default /reki-test/<run>/)")
    ap.add_argument("--ready-timeout", type=float, default=30.0)
    ap.add_argument("--max-seconds", type=float, default=900.0)
    ap.add_argument("--short", action="store_true",
                    help="CI version: 3 trials, 1 repetition, shorter waits")
    ap.add_argument("--etcd-only", action="store_true",
                    help="only test the etcd cluster part")
    ap.add_argument("--keep-tmp", action="store_true",
                    help="keep the temp dir (data dirs) for debugging")
    a = ap.parse_args(argv)
    if a.trials is None:
        a.trials = 3 if a.short else 20
    if a.short:
        a.repeat = 1
    a.scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    bad = [s for s in a.scenarios if s not in ALL_SCENARIOS]
    if bad:
        ap.error("unknown scenario(s) %s; known: %s"
                 % (",".join(bad), ",".join(ALL_SCENARIOS)))
    if a.repeat < 1 or a.trials < 1 or a.ttl < 1 or a.keys < 1 or a.rate < 1:
        ap.error("--repeat, --trials, --ttl, --keys, --rate must be >= 1")
    if a.out is None:
        a.out = "/tmp/reki-cluster-out-%s-%d" % (
            time.strftime("%Y%m%d-%H%M%S"), os.getpid())
    a.out = os.path.abspath(a.out)
    if a.prefix is None:
        a.prefix = "/reki-test/%d-%d/" % (os.getpid(), int(time.time()))
    return a


def main(argv=None):
    args = parse_args(argv)
    if shutil.which(args.etcd_bin) is None:
        print("harness: etcd binary %r not found (apt-get install etcd-server "
              "etcd-client)" % args.etcd_bin, file=sys.stderr)
        return 2
    if not args.etcd_only and not os.access(args.node_bin, os.X_OK):
        print("harness: node binary %s not found or not executable "
              "(--node-bin)" % args.node_bin, file=sys.stderr)
        return 2

    def on_signal(signum, frame):
        raise Aborted("signal %d" % signum, 128 + signum)

    def on_alarm(signum, frame):
        raise Aborted("deadline of %.0f s (--max-seconds) reached"
                      % args.max_seconds, 1)

    h = None
    old = {s: signal.signal(s, on_signal)
           for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, args.max_seconds)
    code = 2
    res = None
    aborted = None
    try:
        h = Harness(args)
        atexit.register(h.children.kill_all)   # backstop
        log("out dir %s, temp dir %s" % (h.out, h.tmp))
        if not args.etcd_only:
            est = h.timing.estimate(args)
            log("estimated run time %.0f s (--max-seconds %.0f)"
                % (est, args.max_seconds))
            if est > 0.9 * args.max_seconds:
                log("WARNING: the run may hit --max-seconds; raise it")
        if args.etcd_only:
            h.etcd_only()
            code = 0
        else:
            h.start_cluster()
            h.start_nodes()
            h.run_scenarios()
            res = h.final_check()
            code = 0 if h.summary(res) else 1
    except Aborted as e:
        aborted = e.why
        code = e.code
        log("aborting: %s" % e.why)
    except HarnessError as e:
        log("ERROR: %s" % e)
        code = 2 if (h is None or not h.runs) else 1
    finally:
        # No signal or alarm may interrupt the cleanup.
        signal.setitimer(signal.ITIMER_REAL, 0)
        for s in old:
            signal.signal(s, signal.SIG_IGN)
        if h is not None:
            h.cleanup()
    if h is not None and aborted and h.runs and h.nodes is not None:
        # Partial report: check what the logs hold so far.
        try:
            h.summary(check_log.check_files(
                [p for p in h.nodes.log_paths() if os.path.exists(p)]),
                aborted=aborted)
        except Exception:
            traceback.print_exc()
    return code


if __name__ == "__main__":
    sys.exit(main())
