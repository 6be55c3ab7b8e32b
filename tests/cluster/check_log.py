#!/usr/bin/env python3
"""Checker for reki-cluster-node activation logs (Python 3 stdlib only).

Log format (one line per record, times are CLOCK_MONOTONIC nanoseconds):

    S <key> <node> <ospid> <actorpid> <token> <t_ns>            actor started
    H <key> <node> <ospid> <actorpid> <token> <t_ns>            message handled
    E <key> <node> <ospid> <actorpid> <token> <t_ns> <reason>   actor exited

<key>, <node>, <actorpid> are tokens without white space, <ospid>, <token>
and <t_ns> are non-negative decimal integers, <reason> is the rest of the
line (at least one word).

An *activation* is one actor of a key: (key, node, ospid, actorpid).  An S
line for a triple that was already seen starts a new activation of it (so a
recycled actor pid does not merge two actors).  Its interval is
[first H t, last H t] (smallest and largest H time).

Violations (exit status 1 from the CLI):
  overlap           two activations of one key whose intervals intersect,
                    even at a single instant;
  token-regression  activations of a key ordered by first H: one has a
                    smaller token than an earlier one;
  malformed         a line that cannot be parsed.  The last line of a file
                    that has no trailing newline (cut by kill -9) is tolerated
                    and ignored, even when it parses (its time may be cut).

Warnings (reported, not failures; --strict makes them failures):
  token-changed     H/S lines of one activation carry different tokens;
  h-after-e         an H line of an activation after its E line;
  h-without-s       an activation whose first record is an H line;
  token-shared      one token used by two different processes (node, ospid).

Use as a module:
    import check_log
    res = check_log.check_files(["n1.log", "n2.log"])
    res.ok, res.keys, res.activations, res.messages, res.violations

or as a CLI:  check_log.py FILE...      (exit 0 ok, 1 violation, 2 usage)
              check_log.py --self-test
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

__all__ = [
    "ParseError", "Record", "Activation", "Violation", "Result", "Checker",
    "parse_line", "check_files", "check_lines", "self_test",
]

MAX_EXAMPLES = 20   # violations/warnings printed per kind by summary()
MAX_STORED = 1000   # violations/warnings kept per kind (all are counted)


class ParseError(ValueError):
    pass


class Record:
    """One parsed log line."""
    __slots__ = ("kind", "key", "node", "ospid", "actorpid", "token", "t",
                 "reason")

    def __init__(self, kind, key, node, ospid, actorpid, token, t, reason=None):
        self.kind = kind
        self.key = key
        self.node = node
        self.ospid = ospid
        self.actorpid = actorpid
        self.token = token
        self.t = t
        self.reason = reason

    def __repr__(self):
        return "Record(%s %s %s %d %s %d %d%s)" % (
            self.kind, self.key, self.node, self.ospid, self.actorpid,
            self.token, self.t, "" if self.reason is None else " " + self.reason)


def _uint(field, what):
    if not field.isdigit() or not field.isascii():
        raise ParseError("%s is not a non-negative integer: %r" % (what, field))
    return int(field)


def parse_line(line):
    """Parse one line (str, with or without trailing newline) into a Record.

    Raises ParseError if the line is malformed."""
    line = line.rstrip("\r\n")
    if not line.strip():
        raise ParseError("empty line")
    if line[:1] == "E":
        parts = line.split(None, 7)
        if len(parts) != 8 or not parts[7].strip():
            raise ParseError("E line needs 8 fields (reason last), got %d"
                             % len(parts))
        reason = parts[7].strip()
    else:
        parts = line.split()
        if len(parts) != 7:
            raise ParseError("%s line needs 7 fields, got %d"
                             % (parts[0][:10], len(parts)))
        reason = None
    kind = parts[0]
    if kind not in ("S", "H", "E"):
        raise ParseError("unknown record type %r" % kind[:10])
    return Record(kind, parts[1], parts[2], _uint(parts[3], "ospid"),
                  parts[4], _uint(parts[5], "token"), _uint(parts[6], "t_ns"),
                  reason)


class Activation:
    """One actor of one key on one process, between two S lines."""
    __slots__ = ("key", "node", "ospid", "actorpid", "gen", "first", "last",
                 "count", "tokens", "started", "ended", "where")

    def __init__(self, key, node, ospid, actorpid, gen, where):
        self.key = key
        self.node = node
        self.ospid = ospid
        self.actorpid = actorpid
        self.gen = gen
        self.first = None       # smallest H time
        self.last = None        # largest H time
        self.count = 0          # H lines
        self.tokens = set()     # tokens seen on S/H lines
        self.started = False    # an S line opened it
        self.ended = False      # an E line was seen
        self.where = where      # file:line of its first record

    @property
    def min_token(self):
        return min(self.tokens)

    @property
    def max_token(self):
        return max(self.tokens)

    def describe(self):
        toks = sorted(self.tokens)
        tok = str(toks[0]) if len(toks) == 1 else ",".join(map(str, toks))
        gen = "" if self.gen == 0 else "#%d" % self.gen
        if self.count:
            span = "H[%d..%d] x%d" % (self.first, self.last, self.count)
        else:
            span = "no H"
        return ("%s@%s/%d/%s%s token=%s %s (from %s)"
                % (self.key, self.node, self.ospid, self.actorpid, gen, tok,
                   span, self.where))


class Violation:
    """A failed property.  t is the instant it happened (ns), if known."""
    __slots__ = ("kind", "message", "t", "activations")

    def __init__(self, kind, message, t=None, activations=()):
        self.kind = kind
        self.message = message
        self.t = t
        self.activations = tuple(activations)

    def __repr__(self):
        return "Violation(%s: %s)" % (self.kind, self.message)

    def __str__(self):
        return "%s: %s" % (self.kind, self.message)


class Result:
    """What a check found.  ok is False on any violation."""

    def __init__(self):
        self.files = 0
        self.lines = 0
        self.keys = 0            # keys with at least one H line
        self.activations = 0     # activations with at least one H line
        self.idle_activations = 0  # activations without any H line
        self.messages = 0        # H lines
        self.starts = 0          # S lines
        self.exits = 0           # E lines
        self.malformed = 0       # malformed lines (each one a violation)
        self.truncated = 0       # tolerated cut last lines
        self.violations = []     # Violation (at most MAX_STORED per kind)
        self.warnings = []       # Violation (not failures unless strict)
        self.by_kind = {}        # kind -> count, violations and warnings
        self.violation_count = 0  # all violations, stored or not
        self.warning_count = 0
        self.per_node = {}       # node name -> H lines
        self.strict = False

    @property
    def ok(self):
        if self.violation_count:
            return False
        return not (self.strict and self.warning_count)

    def summary(self):
        out = ["files=%d lines=%d keys=%d activations=%d (+%d without H) "
               "messages=%d starts=%d exits=%d malformed=%d truncated=%d "
               "violations=%d warnings=%d"
               % (self.files, self.lines, self.keys, self.activations,
                  self.idle_activations, self.messages, self.starts,
                  self.exits, self.malformed, self.truncated,
                  self.violation_count, self.warning_count)]
        if self.per_node:
            out.append("H per node: " + " ".join(
                "%s=%d" % kv for kv in sorted(self.per_node.items())))
        for title, items in (("VIOLATION", self.violations),
                             ("warning", self.warnings)):
            shown = {}
            for v in items:
                n = shown.get(v.kind, 0)
                shown[v.kind] = n + 1
                if n < MAX_EXAMPLES:
                    out.append("%s %s" % (title, v))
            for kind, n in sorted(shown.items()):
                total = self.by_kind.get(kind, n)
                if total > MAX_EXAMPLES:
                    out.append("%s %s: ... %d more not shown"
                               % (title, kind, total - MAX_EXAMPLES))
        out.append("RESULT: %s" % ("OK" if self.ok else "FAIL"))
        return "\n".join(out)


class Checker:
    """Incremental checker: feed files, lines or records, then finish()."""

    def __init__(self, strict=False):
        self.strict = strict
        self._res = Result()
        self._res.strict = strict
        self._current = {}   # (key, node, ospid, actorpid) -> Activation
        self._done = []      # Activations replaced by a later generation
        self._gens = {}      # (key, node, ospid, actorpid) -> next gen
        self._token_owner = {}  # token -> (node, ospid, where)
        self._finished = False

    # -- input ---------------------------------------------------------
    def add_file(self, path):
        """Read one log file.  A last line without newline is tolerated."""
        self._res.files += 1
        with open(path, "rb") as f:
            data_iter = iter(f)
            lineno = 0
            for raw in data_iter:
                lineno += 1
                where = "%s:%d" % (path, lineno)
                if not raw.endswith(b"\n"):
                    # Only the last line of a file can lack its newline.
                    self._res.lines += 1
                    self._res.truncated += 1
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    self._res.lines += 1
                    self._malformed(where, raw, "not UTF-8")
                    continue
                self.add_line(text, where)

    def add_line(self, line, where="?"):
        self._res.lines += 1
        try:
            rec = parse_line(line)
        except ParseError as e:
            self._malformed(where, line, str(e))
            return
        self.add_record(rec, where)

    def add_record(self, rec, where="?"):
        res = self._res
        ident = (rec.key, rec.node, rec.ospid, rec.actorpid)
        act = self._current.get(ident)
        if rec.kind == "S":
            res.starts += 1
            if act is not None:          # a new actor with a recycled pid
                self._done.append(act)
                act = None
            act = self._new(ident, where)
            act.started = True
            act.tokens.add(rec.token)
        elif rec.kind == "H":
            res.messages += 1
            res.per_node[rec.node] = res.per_node.get(rec.node, 0) + 1
            if act is None:
                act = self._new(ident, where)
                self._warn("h-without-s", "H without S: %s at %s"
                           % (_ident_str(ident), where), rec.t)
            if act.ended:
                self._warn("h-after-e", "H after E: %s at %s"
                           % (_ident_str(ident), where), rec.t)
            if act.tokens and rec.token not in act.tokens:
                self._warn("token-changed", "token %d differs from %s at %s"
                           % (rec.token, sorted(act.tokens), where), rec.t)
            act.tokens.add(rec.token)
            act.count += 1
            if act.first is None or rec.t < act.first:
                act.first = rec.t
            if act.last is None or rec.t > act.last:
                act.last = rec.t
        else:  # E
            res.exits += 1
            if act is None:
                act = self._new(ident, where)
            act.ended = True
        if rec.kind != "E":
            owner = self._token_owner.get(rec.token)
            proc = (rec.node, rec.ospid)
            if owner is None:
                self._token_owner[rec.token] = (rec.node, rec.ospid, where)
            elif owner[:2] != proc:
                self._warn("token-shared",
                           "token %d used by %s/%d (first at %s) and %s/%d "
                           "(at %s)" % (rec.token, owner[0], owner[1],
                                        owner[2], rec.node, rec.ospid, where),
                           rec.t)
                # report each (token, process) pair once
                self._token_owner[rec.token] = (rec.node, rec.ospid, where)

    def _new(self, ident, where):
        gen = self._gens.get(ident, 0)
        self._gens[ident] = gen + 1
        act = Activation(*ident, gen=gen, where=where)
        self._current[ident] = act
        return act

    def _malformed(self, where, line, why):
        self._res.malformed += 1
        text = line if isinstance(line, str) else repr(line)
        text = text.rstrip("\r\n")
        if len(text) > 120:
            text = text[:120] + "..."
        self._violation(Violation("malformed", "%s: %s: %r" % (where, why,
                                                                text)))

    def _violation(self, v):
        res = self._res
        n = res.by_kind.get(v.kind, 0)
        res.by_kind[v.kind] = n + 1
        res.violation_count += 1
        if n < MAX_STORED:
            res.violations.append(v)

    def _warn(self, kind, message, t=None):
        res = self._res
        n = res.by_kind.get(kind, 0)
        res.by_kind[kind] = n + 1
        res.warning_count += 1
        if n < MAX_STORED:
            res.warnings.append(Violation(kind, message, t))

    # -- analysis --------------------------------------------------------
    def finish(self):
        """Run the per-key checks and return the Result (once)."""
        if self._finished:
            return self._res
        self._finished = True
        res = self._res
        per_key = {}
        for act in list(self._done) + list(self._current.values()):
            if act.count == 0:
                res.idle_activations += 1
                continue
            per_key.setdefault(act.key, []).append(act)
        res.keys = len(per_key)
        res.activations = sum(len(v) for v in per_key.values())
        for key in sorted(per_key):
            acts = sorted(per_key[key], key=lambda a: (a.first, a.last))
            self._check_overlap(acts)
            self._check_tokens(acts)
        return res

    def _check_overlap(self, acts):
        # Sweep in order of first H; 'open_' holds earlier activations whose
        # interval reaches at least up to the current one's start.
        open_ = []
        for act in acts:
            open_ = [o for o in open_ if o.last >= act.first]
            for o in open_:
                lo = max(o.first, act.first)
                hi = min(o.last, act.last)
                self._violation(Violation(
                    "overlap",
                    "key %s: %s and %s both handled messages in [%d, %d] "
                    "(%.3f ms)" % (act.key, o.describe(), act.describe(), lo,
                                   hi, (hi - lo) / 1e6),
                    t=lo, activations=(o, act)))
            open_.append(act)

    def _check_tokens(self, acts):
        best = None  # earlier activation with the largest token
        for act in acts:
            if best is not None and act.min_token < best.max_token:
                self._violation(Violation(
                    "token-regression",
                    "key %s: %s started handling after %s but has an older "
                    "token (%d < %d)" % (act.key, act.describe(),
                                         best.describe(), act.min_token,
                                         best.max_token),
                    t=act.first, activations=(best, act)))
            if best is None or act.max_token > best.max_token:
                best = act


def _ident_str(ident):
    return "%s@%s/%d/%s" % ident


def check_files(paths, strict=False):
    """Check log files together; returns a Result."""
    c = Checker(strict=strict)
    for p in paths:
        c.add_file(p)
    return c.finish()


def check_lines(lines, strict=False):
    """Check an iterable of text lines (as one stream, no truncation rule)."""
    c = Checker(strict=strict)
    for i, line in enumerate(lines, 1):
        c.add_line(line, "<lines>:%d" % i)
    return c.finish()


# ---------------------------------------------------------------------------
# self-test

def _write(path, text):
    with open(path, "wb") as f:
        f.write(text if isinstance(text, bytes) else text.encode())


def self_test(verbose=True):
    """Run the checker on synthetic logs; returns True if all cases behave."""
    failures = []
    tmp = tempfile.mkdtemp(prefix="check_log_selftest.")
    try:
        def case(name, files, expect_ok, expect_kinds=(), expect=None,
                 strict=False):
            paths = []
            for i, text in enumerate(files):
                p = os.path.join(tmp, "%s.%d.log" % (name, i))
                _write(p, text)
                paths.append(p)
            res = check_files(paths, strict=strict)
            problems = []
            if res.ok != expect_ok:
                problems.append("ok=%s, expected %s" % (res.ok, expect_ok))
            for k in expect_kinds:
                if not res.by_kind.get(k):
                    problems.append("no %s reported" % k)
            kinds = set(v.kind for v in res.violations)
            unexpected = kinds - set(expect_kinds)
            if unexpected:
                problems.append("unexpected %s" % ",".join(sorted(unexpected)))
            for attr, want in (expect or {}).items():
                got = getattr(res, attr)
                if got != want:
                    problems.append("%s=%r, expected %r" % (attr, got, want))
            if problems:
                failures.append(name)
                if verbose:
                    print("self-test %-28s FAILED: %s" % (name,
                                                          "; ".join(problems)))
                    print("  " + res.summary().replace("\n", "\n  "))
            elif verbose:
                print("self-test %-28s ok (%s)" % (
                    name, "pass" if expect_ok else
                    ",".join(sorted(k for k in res.by_kind))))
            return paths

        # -- logs that must pass ---------------------------------------
        n1 = ("S k1 n1 100 a1 5 1000\n"
              "H k1 n1 100 a1 5 1100\n"
              "H k1 n1 100 a1 5 1200\n"
              "S k2 n1 100 a2 5 1050\n"
              "H k2 n1 100 a2 5 1300\n"
              "E k1 n1 100 a1 5 1250 lease lost\n"
              "E k2 n1 100 a2 5 1400 handoff\n")
        n2 = ("S k1 n2 200 b7 9 1300\n"
              "H k1 n2 200 b7 9 1301\n"
              "H k1 n2 200 b7 9 1900\n"
              "S k2 n2 200 b8 9 1500\n"
              "H k2 n2 200 b8 9 1500\n")
        good = case("pass-handover", [n1, n2], True,
                    expect={"keys": 2, "activations": 4, "messages": 6,
                            "starts": 4, "exits": 2, "truncated": 0})
        # A cut last line is tolerated and ignored, even if it parses.
        case("pass-cut-last-line",
             [n1, n2 + "H k1 n2 200 b7 9 19"], True,
             expect={"messages": 6, "truncated": 1, "malformed": 0})
        case("pass-cut-garbage-last-line",
             [n1 + "H k2 n1 1", n2], True,
             expect={"truncated": 1, "malformed": 0})
        # Two processes appending to one file; node restarted (new ospid).
        case("pass-shared-file-restart",
             ["S k1 n1 100 a1 3 10\nH k1 n1 100 a1 3 20\n"
              "S k1 n2 200 b1 4 25\nH k1 n2 200 b1 4 30\n"
              "H k1 n2 200 b1 4 40\nE k1 n2 200 b1 4 41 killed\n"
              "S k1 n1 101 a1 6 50\nH k1 n1 101 a1 6 60\n"], True,
             expect={"keys": 1, "activations": 3})
        # Same actor pid reused on the same process after another node held
        # the key: the S line starts a new activation, so no overlap.
        case("pass-recycled-actorpid",
             ["S k1 n1 100 a1 3 0\nH k1 n1 100 a1 3 10\n"
              "E k1 n1 100 a1 3 11 idle\n"
              "S k1 n1 100 a1 8 40\nH k1 n1 100 a1 8 50\n",
              "S k1 n2 200 b1 5 15\nH k1 n2 200 b1 5 20\n"
              "H k1 n2 200 b1 5 30\nE k1 n2 200 b1 5 31 handoff\n"], True,
             expect={"activations": 3})
        # Same token on consecutive activations (same claim) is allowed.
        case("pass-equal-tokens",
             ["H k1 n1 100 a1 4 10\nE k1 n1 100 a1 4 11 idle\n"
              "S k1 n1 100 a2 4 12\nH k1 n1 100 a2 4 20\n"], True)
        # Warnings do not fail unless strict.
        warn = ["S k1 n1 100 a1 3 10\nH k1 n1 100 a1 3 20\n"
                "E k1 n1 100 a1 3 25 x\nH k1 n1 100 a1 3 26\n"]
        case("pass-warning-h-after-e", warn, True, ["h-after-e"])
        case("fail-warning-strict", warn, False, ["h-after-e"], strict=True)
        case("pass-empty-file", [""], True, expect={"keys": 0, "lines": 0})

        # -- logs that must fail -----------------------------------------
        case("fail-overlap",
             [n1, n2.replace("H k1 n2 200 b7 9 1301",
                             "H k1 n2 200 b7 9 1150")],
             False, ["overlap"])
        # Intervals that touch at a single instant overlap.
        case("fail-overlap-one-instant",
             ["H k1 n1 100 a1 3 10\nH k1 n1 100 a1 3 20\n",
              "H k1 n2 200 b1 4 20\nH k1 n2 200 b1 4 30\n"],
             False, ["overlap"], expect={"malformed": 0})
        # Two activations on the same node overlap too.
        case("fail-overlap-same-node",
             ["H k1 n1 100 a1 3 10\nH k1 n1 100 a2 3 15\n"
              "H k1 n1 100 a1 3 20\n"], False, ["overlap"])
        # Activation nested in another one.
        case("fail-overlap-nested",
             ["H k1 n1 100 a1 3 10\nH k1 n1 100 a1 3 100\n",
              "H k1 n2 200 b1 4 40\nH k1 n2 200 b1 4 50\n"],
             False, ["overlap"])
        case("fail-token-regression",
             [n1, n2.replace(" 9 ", " 4 ")], False, ["token-regression"])
        case("fail-garbage-line",
             [n1.replace("H k1 n1 100 a1 5 1200\n",
                         "H k1 n1 100 a1 5 1200\n#@!garbage\n"), n2],
             False, ["malformed"], expect={"malformed": 1})
        # A cut line followed by more lines (not last) is an error.
        case("fail-cut-line-mid-file",
             ["H k1 n1 100 a1 5 1100\nH k1 n1 1H k1 n1 100 a1 5 1200\n"],
             False, ["malformed"])
        case("fail-bad-fields",
             ["H k1 n1 100 a1 five 1100\n", "E k1 n1 100 a1 5 1200\n",
              "X k1 n1 100 a1 5 1300\n", "H k1 n1 -1 a1 5 1300\n",
              "\n"],
             False, ["malformed"], expect={"malformed": 5})
        case("fail-not-utf8", [b"H k1 n1 100 a\xff 5 1\n"],
             False, ["malformed"])

        # -- the CLI: exit status 0 on a good log, 1 on a bad one ---------
        bad = os.path.join(tmp, "bad.log")
        _write(bad, "H k1 n1 100 a1 3 10\nH k1 n2 200 b1 4 10\n")
        for paths, want in ((good, 0), ([bad], 1)):
            p = subprocess.run([sys.executable, os.path.abspath(__file__)]
                               + paths, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=60)
            name = "cli-exit-%d" % want
            if p.returncode != want:
                failures.append(name)
                if verbose:
                    print("self-test %-28s FAILED: exit %d\n%s"
                          % (name, p.returncode, p.stdout.decode()))
            elif verbose:
                print("self-test %-28s ok" % name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if verbose:
        print("self-test: %d failed" % len(failures))
    return not failures


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Check reki-cluster-node logs for overlapping activations "
                    "and token regressions.")
    ap.add_argument("files", nargs="*", metavar="FILE")
    ap.add_argument("--self-test", action="store_true",
                    help="check the checker on synthetic logs")
    ap.add_argument("--strict", action="store_true",
                    help="treat warnings as violations")
    args = ap.parse_args(argv)
    if args.self_test:
        return 0 if self_test() else 1
    if not args.files:
        ap.error("no log files given")
    for p in args.files:
        if not os.path.isfile(p):
            print("check_log: no such file: %s" % p, file=sys.stderr)
            return 2
    res = check_files(args.files, strict=args.strict)
    print(res.summary())
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
