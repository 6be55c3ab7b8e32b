#!/usr/bin/env python3
"""reki-resp's cluster mode, end to end (Python 3 stdlib only).

Starts one etcd (a temporary data dir, removed at the end) and three
reki-resp nodes in cluster mode on free 127.0.0.1 ports, then, with the real
redis-cli:
  - SET 200 keys through node 1, GET each through nodes 2 and 3;
  - INCR one counter 300 times, spread over the three nodes: 300;
  - MGET over keys of several nodes in one command: the values, in order;
  - DEL over several nodes' keys: the right count; EXISTS agrees;
  - INFO: each node owns shards, has forwarded requests, and none timed out;
  - node 3 killed (-9): a pipeline of GETs through node 1 gets the values of
    the other nodes' keys and, for node 3's, the cluster's timeout error
    after 5 s; once node 3's shards are taken over, its keys read nil (they
    start empty on their new node) and work again.
The surviving nodes must then exit 0 on SIGTERM (in an ASan build: nothing
leaked).

    test_resp_cluster.py --server PATH/reki-resp

Children get PR_SET_PDEATHSIG (SIGKILL) and are killed by pid at the end,
whatever happens; the whole run is bounded (--max-seconds, 150).  Exit
status: 0 passed, 1 failed, 77 skipped (no etcd or no redis-cli).
"""

import argparse
import ctypes
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
SHARDS = 64


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def preexec():
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Run:
    def __init__(self, server, etcd_bin, cli_bin):
        self.server, self.etcd_bin, self.cli_bin = server, etcd_bin, cli_bin
        self.tmp = tempfile.mkdtemp(prefix="reki-resp-cluster-")
        self.etcd = None
        self.nodes = []  # (name, Popen, port, stderr path)

    def log_tail(self, path, n=30):
        try:
            with open(path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    # ------------------------------------------------------------ processes
    def start_etcd(self):
        cport, pport = free_port(), free_port()
        self.etcd_url = "http://127.0.0.1:%d" % cport
        peer = "http://127.0.0.1:%d" % pport
        self.etcd_log = os.path.join(self.tmp, "etcd.log")
        with open(self.etcd_log, "w") as log:
            self.etcd = subprocess.Popen(
                [self.etcd_bin, "--name", "e1",
                 "--data-dir", os.path.join(self.tmp, "etcd-data"),
                 "--listen-client-urls", self.etcd_url,
                 "--advertise-client-urls", self.etcd_url,
                 "--listen-peer-urls", peer,
                 "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", "e1=" + peer],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=preexec)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            check(self.etcd.poll() is None,
                  "etcd exited:\n" + self.log_tail(self.etcd_log))
            try:
                with urllib.request.urlopen(self.etcd_url + "/health", timeout=1) as r:
                    if b'"true"' in r.read():
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise Failed("etcd did not become healthy")

    def start_node(self, name):
        err = os.path.join(self.tmp, name + ".stderr")
        with open(err, "w") as ef:
            p = subprocess.Popen(
                [self.server, "--port", "0",
                 "--cluster-etcd", self.etcd_url, "--cluster-node", name,
                 "--cluster-listen", "127.0.0.1:%d" % free_port(),
                 "--cluster-ttl", "2", "--cluster-shards", str(SHARDS),
                 "--cluster-prefix", "/reki-resp-test/"],
                stdout=subprocess.PIPE, stderr=ef, stdin=subprocess.DEVNULL,
                preexec_fn=preexec)
        self.nodes.append((name, p, None, err))
        ready, _, _ = select.select([p.stdout], [], [], 30)
        line = p.stdout.readline().decode(errors="replace") if ready else ""
        check("listening on 127.0.0.1:" in line,
              "%s did not start (%r):\n%s" % (name, line, self.log_tail(err)))
        port = int(line.split("127.0.0.1:")[1].split()[0])
        self.nodes[-1] = (name, p, port, err)
        return port

    def stop_nodes(self):
        """SIGTERM each node (by pid); every one must exit 0 within 30 s."""
        bad = []
        for name, p, _, err in self.nodes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p, _, err in self.nodes:
            try:
                rc = p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                rc = "timeout"
            if rc != 0:
                bad.append("%s exited %s:\n%s" % (name, rc, self.log_tail(err, 60)))
        self.nodes = []
        check(not bad, "\n".join(bad))

    def cleanup(self):
        for _, p, _, _ in self.nodes:
            if p.poll() is None:
                p.kill()
                p.wait()
        if self.etcd and self.etcd.poll() is None:
            self.etcd.kill()
            self.etcd.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ----------------------------------------------------------- redis-cli
    def cli(self, port, *args):
        r = subprocess.run([self.cli_bin, "-p", str(port)] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=30)
        return r.stdout.decode(errors="replace").rstrip("\n")

    def cli_batch(self, port, commands):
        """Commands on redis-cli's stdin, one per line; one reply line each."""
        r = subprocess.run([self.cli_bin, "-p", str(port)],
                           input="".join(c + "\n" for c in commands).encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        out = r.stdout.decode(errors="replace").split("\n")
        if out and out[-1] == "":
            out.pop()
        check(len(out) == len(commands),
              "redis-cli: %d replies for %d commands: %r" % (len(out), len(commands), out[-5:]))
        return out

    def info(self, port):
        d = {}
        for line in self.cli(port, "info").splitlines():
            if ":" in line:
                k, v = line.strip().split(":", 1)
                d[k] = v
        return d


def wait_balanced(run, ports):
    """Until every node sees the others and owns shards, and all shards are owned."""
    deadline = time.monotonic() + 40
    last = None
    while time.monotonic() < deadline:
        infos = [run.info(p) for p in ports]
        owned = [int(i.get("cluster_shards_owned", "0")) for i in infos]
        nodes = [int(i.get("cluster_nodes", "0")) for i in infos]
        last = (owned, nodes)
        if all(n == len(ports) for n in nodes) and all(o > 0 for o in owned) and \
                sum(owned) == SHARDS:
            return owned
        time.sleep(0.25)
    raise Failed("the cluster did not settle (owned, nodes): %r" % (last,))


def pipeline_gets(port, keys, timeout=20):
    """GET every key on one connection, written at once; the replies, parsed:
    bytes (a value), None (nil) or ("err", line)."""
    req = b"".join(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k.encode()) for k in keys)
    out, buf = [], b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(req)
        while len(out) < len(keys):
            while True:  # parse what is there
                nl = buf.find(b"\r\n")
                if nl < 0:
                    break
                head = buf[:nl]
                if head[:1] == b"$":
                    n = int(head[1:])
                    if n < 0:
                        out.append(None)
                        buf = buf[nl + 2:]
                        continue
                    if len(buf) < nl + 2 + n + 2:
                        break
                    out.append(buf[nl + 2:nl + 2 + n])
                    buf = buf[nl + 2 + n + 2:]
                elif head[:1] == b"-":
                    out.append(("err", head[1:].decode()))
                    buf = buf[nl + 2:]
                else:
                    raise Failed("unexpected reply %r" % head)
            if len(out) < len(keys):
                data = s.recv(65536)
                check(data, "the server closed the connection")
                buf += data
    return out


def scenario(run):
    run.start_etcd()
    ports = [run.start_node(n) for n in ("n1", "n2", "n3")]
    owned = wait_balanced(run, ports)
    print("shards owned per node: %r" % owned, flush=True)
    for p in ports:
        check(run.info(p).get("cluster_enabled") == "1", "INFO has a Cluster section")

    # SET 200 keys through node 1; GET each through nodes 2 and 3.
    keys = ["key:%d" % i for i in range(200)]
    vals = ["value-%d-%s" % (i, "x" * (i % 7)) for i in range(200)]
    got = run.cli_batch(ports[0], ["SET %s %s" % kv for kv in zip(keys, vals)])
    check(got == ["OK"] * 200, "SET through node 1: %r" % [g for g in got if g != "OK"][:5])
    for p in ports[1:]:
        got = run.cli_batch(p, ["GET " + k for k in keys])
        bad = [(k, v, g) for k, v, g in zip(keys, vals, got) if v != g]
        check(not bad, "GET through port %d: %d wrong, e.g. %r" % (p, len(bad), bad[:3]))
    print("200 keys set through n1, read back through n2 and n3", flush=True)

    # INCR one counter 300 times, spread over the three nodes.
    for rnd in range(10):
        for p in ports:
            got = run.cli_batch(p, ["INCR counter"] * 10)
            check(all(g.isdigit() for g in got), "INCR replies: %r" % got)
    for p in ports:
        check(run.cli(p, "get", "counter") == "300", "counter through port %d" % p)
    print("INCR x300 over three nodes: 300", flush=True)

    # MGET over keys of several nodes, in one command, from node 3: some
    # are served here (direct), some by the other two nodes (received).
    before = [run.info(p) for p in ports]
    mkeys = keys[:40] + ["missing:1"] + keys[40:60]
    want = vals[:40] + [""] + vals[40:60]
    got = run.cli(ports[2], "mget", *mkeys).split("\n")
    check(got == want, "MGET in order: %r" % [(w, g) for w, g in zip(want, got) if w != g][:3])
    after = [run.info(p) for p in ports]

    def delta(i, field):
        return int(after[i].get(field, "0")) - int(before[i].get(field, "0"))
    check(delta(2, "cluster_requests_direct") > 0, "MGET: some keys on node 3 itself")
    check(delta(2, "cluster_requests_remote") > 0, "MGET: some keys on other nodes")
    check(delta(0, "cluster_received") > 0 and delta(1, "cluster_received") > 0,
          "MGET: keys of both other nodes (received %d, %d)"
          % (delta(0, "cluster_received"), delta(1, "cluster_received")))
    print("MGET of 61 keys over three nodes: in order", flush=True)

    # DEL over several nodes' keys (and two missing ones), then EXISTS.
    got = run.cli(ports[1], "del", *(keys[:50] + ["missing:1", "missing:2"]))
    check(got == "50", "DEL count: %r" % got)
    check(run.cli(ports[0], "exists", *keys[:60]) == "10", "EXISTS after DEL")
    check(run.cli(ports[2], "get", keys[0]) == "", "a deleted key reads nil")
    check(run.cli(ports[0], "get", keys[199]) == vals[199], "an untouched key")
    print("DEL over several nodes: 50", flush=True)

    # INFO: every node owns shards and has forwarded requests; none was lost.
    for name, p in zip(("n1", "n2", "n3"), ports):
        i = run.info(p)
        check(int(i["cluster_shards_owned"]) > 0, name + " owns shards")
        check(int(i["cluster_forwarded"]) > 0, name + " forwarded requests")
        check(i["cluster_request_timeouts"] == "0", name + ": no request timed out")
        check(i["cluster_request_errors"] == "0", name + ": no routing error")
        check(i["cluster_bad_messages"] == "0", name + ": no malformed message")
        print("%s: shards %s forwarded %s received %s direct %s remote %s" % (
            name, i["cluster_shards_owned"], i["cluster_forwarded"], i["cluster_received"],
            i["cluster_requests_direct"], i["cluster_requests_remote"]), flush=True)

    # Node 3 dies: its keys' requests time out with an error, the others'
    # are answered; once its shards are taken over, its keys start empty.
    n3 = run.nodes[2][1]
    n3.kill()
    n3.wait()
    run.nodes.pop(2)
    gkeys, gvals = keys[60:], vals[60:]
    t0 = time.monotonic()
    got = pipeline_gets(ports[0], gkeys)
    took = time.monotonic() - t0
    timeout_err = ("err", "ERR cluster: no reply from the key's node")
    lost = [k for k, g in zip(gkeys, got) if g == timeout_err]
    bad = [(k, v, g) for k, v, g in zip(gkeys, gvals, got)
           if g != v.encode() and k not in lost]
    check(not bad, "after the kill: wrong replies %r" % bad[:3])
    check(lost, "some GETs went to the dead node and timed out")
    check(4.5 < took < 15, "the timeout took %.1f s" % took)
    print("n3 killed: %d GETs timed out after %.1f s, %d answered"
          % (len(lost), took, len(gkeys) - len(lost)), flush=True)
    check(int(run.info(ports[0])["cluster_request_timeouts"]) >= len(lost), "INFO counts timeouts")
    owned = wait_balanced(run, ports[:2])
    got = pipeline_gets(ports[1], gkeys)
    for k, v, g in zip(gkeys, gvals, got):
        check(g is None if k in lost else g == v.encode(),
              "after the takeover, %s: %r" % (k, g))
    got = run.cli_batch(ports[0], ["SET %s again" % k for k in lost])
    check(got == ["OK"] * len(lost), "SET of the moved keys: %r" % got[:3])
    check(run.cli(ports[1], "get", lost[0]) == "again", "a moved key works again")
    print("shards taken over %r: n3's keys read nil, then work again" % owned, flush=True)

    run.stop_nodes()
    print("the two other nodes stopped cleanly", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--max-seconds", type=int, default=150)
    a = ap.parse_args()
    etcd_bin = os.environ.get("REKI_ETCD_BIN", "/usr/bin/etcd")
    cli_bin = shutil.which("redis-cli")
    if not os.access(etcd_bin, os.X_OK) or not cli_bin:
        print("skipped: needs etcd (%s) and redis-cli" % etcd_bin)
        return 77

    def on_alarm(sig, frame):
        raise Failed("over %d s" % a.max_seconds)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(128 + s))
    signal.alarm(a.max_seconds)
    run = Run(a.server, etcd_bin, cli_bin)
    try:
        scenario(run)
        print("resp cluster: all checks passed")
        return 0
    except (Failed, subprocess.TimeoutExpired) as e:
        print("FAILED: %s" % e)
        for name, _, _, err in run.nodes:
            print("--- %s stderr:\n%s" % (name, run.log_tail(err)))
        return 1
    finally:
        signal.alarm(0)
        run.cleanup()


if __name__ == "__main__":
    sys.exit(main())
