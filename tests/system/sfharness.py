"""sfharness.py - the harness of the shardflow system tests.

Starts real `shardflow` processes (a `dev` node, generic workers, CLI
commands) on 127.0.0.1 ephemeral ports in a temporary directory, and gives
each test:

- Env: the temp dir, a free port, every process it started (killed by PID
  at the end, also from atexit and when the test itself is killed);
- Node: `shardflow dev` with kill9 / stop / restart and a ready wait;
- Worker: `shardflow worker --queue Q --exec CMD`;
- cli(): one CLI command -> (exit code, parsed JSON or text);
- wait_for(): wait on a condition with a deadline (never a fixed sleep);
- Suite: counts checks, prints what it checks, ends with
  "N passed, M failed" and the exit status;
- small readers: rfc3339_to_epoch, event_types, step_events, pid_alive,
  and kill_group_of for commands a killed worker left behind;
- ShardFile: a stopped node's shard environment opened through liblmdb
  (ctypes), to read or damage stored records.

Python 3 stdlib only. SHARDFLOW_BIN names the binary (ctest sets it);
without it the harness looks in $SHARDFLOW_BUILD/bin, then build/bin.
Set SHF_TEST_KEEP=1 to keep the temp dir (logs) of a run.
"""

import atexit
import calendar
import ctypes
import ctypes.util
import json as jsonlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("SHARDFLOW_SRC") or os.path.dirname(os.path.dirname(HERE))


def _find_bin():
    b = os.environ.get("SHARDFLOW_BIN")
    if b:
        return b
    for d in (os.environ.get("SHARDFLOW_BUILD"), os.path.join(SRC, "build")):
        if d and os.path.exists(os.path.join(d, "bin", "shardflow")):
            return os.path.join(d, "bin", "shardflow")
    return os.path.join(SRC, "build", "bin", "shardflow")


BIN = _find_bin()

RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

# ---------------------------------------------------------------- processes

_procs = []          # every long-lived Popen we started
_procs_lock = threading.Lock()


try:
    _libc = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _libc = None


def _pdeathsig():
    # Runs in the child before exec: die with SIGKILL if the test dies, so
    # a test killed by ctest's timeout leaves no node or worker behind.
    # Used only for nodes and workers (started from the main thread); CLI
    # commands run from thread pools and end by themselves.
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _track(p):
    with _procs_lock:
        _procs.append(p)
    return p


def _kill_all():
    with _procs_lock:
        procs = list(_procs)
    for p in procs:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(timeout=10)
        except Exception:
            pass


atexit.register(_kill_all)


def _on_term(signum, frame):
    _kill_all()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _on_term)


class TestFailure(Exception):
    pass



def import_zmq():
    """pyzmq, or None. ctest may have found a Python without python3-zmq
    (e.g. pyenv); the Debian one has it, so re-run the test under it."""
    try:
        import zmq
        return zmq
    except ImportError:
        if (os.path.exists("/usr/bin/python3")
                and not os.environ.get("SHF_NO_REEXEC")
                and os.path.realpath(sys.executable)
                != os.path.realpath("/usr/bin/python3")):
            os.environ["SHF_NO_REEXEC"] = "1"
            os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
        return None

def wait_for(predicate, timeout, interval=0.05, what="condition"):
    """Poll predicate() until it returns a truthy value (returned) or the
    deadline passes (TestFailure naming `what` and the last value)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
        except TestFailure:
            raise
        except Exception as e:  # keep polling through transient errors
            last = "exception: %r" % (e,)
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise TestFailure("timed out after %.1f s waiting for %s (last: %s)"
                              % (timeout, what, _short(last)))
        time.sleep(interval)


def _short(v, n=400):
    s = repr(v)
    return s if len(s) <= n else s[:n] + "..."


def read_marks(path):
    """The lines a test worker appended to path, split into tuples."""
    try:
        with open(path) as f:
            return [tuple(line.split()) for line in f if line.strip()]
    except OSError:
        return []


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def tail(path, n=30):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return "(no %s)" % path


def port_open(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def tcp_established_to(pid, port):
    """True when process pid has an ESTABLISHED TCP connection to
    127.0.0.1:port (read from /proc; used to know a worker has connected)."""
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if t.startswith("socket:["):
                inodes.add(t[8:-1])
    except OSError:
        return False
    want = "0100007F:%04X" % port
    for table in ("/proc/%d/net/tcp" % pid,):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if (cols[2] == want and cols[3] == "01"
                            and cols[9] in inodes):
                        return True
        except OSError:
            pass
    return False


# ---------------------------------------------------------------- CLI

class CliResult(tuple):
    """(rc, out) where out is the parsed JSON (json=True and stdout parses)
    or the stdout text. Also .stdout, .stderr, .args. rc is None when the
    command timed out (and was killed)."""

    def __new__(cls, rc, out, stdout, stderr, args):
        self = tuple.__new__(cls, (rc, out))
        self.rc, self.out = rc, out
        self.stdout, self.stderr, self.args = stdout, stderr, args
        return self

    def describe(self):
        return ("`%s` -> exit %s\n  stdout: %s\n  stderr: %s"
                % (" ".join(self.args), self.rc, _short(self.stdout, 600),
                   _short(self.stderr, 600)))

    def error_code(self):
        if isinstance(self.out, dict) and isinstance(self.out.get("error"), dict):
            return self.out["error"].get("code")
        return None

    def error_message(self):
        if isinstance(self.out, dict) and isinstance(self.out.get("error"), dict):
            return self.out["error"].get("message") or ""
        return ""


def run_cli(server, *args, json=True, check=None, input=None, timeout=30,
            env=None):
    """Run `shardflow --server SERVER [--json] ARGS...`. check: the exit
    code expected (TestFailure otherwise)."""
    argv = [BIN]
    if server:
        argv += ["--server", server]
    if json:
        argv += ["--json"]
    argv += [str(a) for a in args]
    e = dict(os.environ)
    if env:
        e.update(env)
    try:
        p = subprocess.run(argv, input=input.encode() if isinstance(input, str) else input,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, env=e)
        rc = p.returncode
        so = p.stdout.decode("utf-8", "replace")
        se = p.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as te:
        rc = None
        so = (te.stdout or b"").decode("utf-8", "replace")
        se = (te.stderr or b"").decode("utf-8", "replace") + \
            "\n(harness: killed after %s s)" % timeout
    out = so
    if json:
        try:
            out = jsonlib.loads(so)
        except ValueError:
            out = so
    r = CliResult(rc, out, so, se, argv)
    if check is not None and rc != check:
        raise TestFailure("expected exit %s from\n%s" % (check, r.describe()))
    return r


# ---------------------------------------------------------------- env

class Env:
    """One test's world: a temp dir and the processes started in it."""

    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="shf-%s-" % name)
        self.nodes = []
        self.workers = []

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def write(self, name, text, mode=None):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        if mode is not None:
            os.chmod(p, mode)
        return p

    def write_json(self, name, obj):
        return self.write(name, jsonlib.dumps(obj, indent=2))

    def sanitizer_reports(self):
        """Lines of a sanitizer report in the logs of the nodes and workers
        started here (a sanitizer build writes them there)."""
        reports = []
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(".log"):
                with open(self.path(name), "rb") as f:
                    text = f.read().decode("utf-8", "replace")
                reports += ["%s: %s" % (name, line)
                            for line in text.splitlines()
                            if "Sanitizer" in line
                            or "runtime error:" in line]
        return reports

    def mkdir(self, name):
        """A fresh directory in the temp dir; returns its path."""
        p = self.path(name)
        os.mkdir(p)
        return p

    def register(self, node, defs):
        """Register each definition document with node (exit 0 or fail)."""
        for d in defs:
            node.cli("def", "register", self.write_json(d["name"] + ".json",
                                                        d), check=0)

    def script(self, name, body):
        """An executable bash script in the temp dir; returns its path."""
        return self.write(name, "#!/bin/bash\n" + body, 0o755)

    def node(self, data=None, port=None, shards=8, env=None, start=True,
             ready="cli"):
        n = Node(self, data or self.path("data%d" % len(self.nodes)),
                 port or free_port(), shards, env)
        self.nodes.append(n)
        if start:
            n.start(ready=ready)
        return n

    def worker(self, node, queue, exec_cmd, concurrency=4, env=None,
               extra=()):
        w = Worker(self, node, queue, exec_cmd, concurrency, env, extra)
        self.workers.append(w)
        w.start()
        return w

    def close(self, ok):
        for w in self.workers:
            w.kill9()
        for n in self.nodes:
            n.kill9()
        if ok and not os.environ.get("SHF_TEST_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print("(logs kept in %s)" % self.dir)


class Node:
    def __init__(self, env, data_dir, port, shards=8, extra_env=None):
        self.env = env
        self.data = data_dir
        self.port = port
        self.shards = shards
        self.extra_env = extra_env or {}
        self.endpoint = "tcp://127.0.0.1:%d" % port
        self.proc = None
        self.starts = 0
        self.log = None

    def log_text(self):
        """What this start of the node has logged so far ("" before it)."""
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    def raw_socket(self):
        """A pyzmq DEALER connected to the node, for the raw wire (the
        caller closes it); None without python3-zmq."""
        zmq = import_zmq()
        if zmq is None:
            return None
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        return sock

    def start(self, env=None, ready="cli", timeout=30):
        """Start `shardflow dev`. env replaces the extra environment of this
        and later starts when given. ready: "cli" (a `wf list` succeeds),
        "tcp" (the port accepts connections; no request is sent) or None."""
        if env is not None:
            self.extra_env = env
        self.starts += 1
        self.log = self.env.path("node-%d-%d.log" % (self.port, self.starts))
        e = dict(os.environ)
        e.pop("SHF_FAILPOINTS", None)
        e.update(self.extra_env)
        argv = [BIN, "dev", "--data", self.data, "--listen", self.endpoint,
                "--shards", str(self.shards)]
        out = open(self.log, "wb")
        self.proc = _track(subprocess.Popen(argv, stdout=out,
                                            stderr=subprocess.STDOUT,
                                            env=e, preexec_fn=_pdeathsig))
        out.close()
        if ready:
            self.wait_ready(ready, timeout)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, how="cli", timeout=30):
        def ok():
            if not self.alive():
                raise TestFailure("node exited (code %s) before it was ready;"
                                  " log:\n%s" % (self.proc.returncode,
                                                 tail(self.log)))
            if how == "tcp":
                return port_open(self.port)
            return self.cli("wf", "list", "--limit", "1", timeout=10).rc == 0
        wait_for(ok, timeout, interval=0.1, what="node %s ready (%s)"
                 % (self.endpoint, how))

    def cli(self, *args, **kw):
        return run_cli(self.endpoint, *args, **kw)

    def result_wait(self, wid, timeout=30):
        """`wf result WID --wait`: the result object, or {"raw": ...}."""
        r = self.cli("wf", "result", wid, "--wait", timeout=timeout)
        return r.out if isinstance(r.out, dict) else {"raw": r.describe()}

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)

    def stop(self, timeout=20):
        """SIGTERM, wait; SIGKILL after timeout. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        return self.proc.returncode

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def restart(self, env=None, ready="cli"):
        self.kill9()
        return self.start(env=env, ready=ready)


class Worker:
    def __init__(self, env, node, queue, exec_cmd, concurrency=4,
                 extra_env=None, extra=()):
        self.env = env
        self.node = node
        self.queue = queue
        self.exec_cmd = exec_cmd
        self.concurrency = concurrency
        self.extra_env = extra_env or {}
        self.extra = list(extra)
        self.proc = None
        self.log = None
        self.n = 0

    def start(self):
        self.n += 1
        self.log = self.env.path("worker-%s-%d-%d.log"
                                 % (self.queue, id(self) % 10000, self.n))
        e = dict(os.environ)
        e.pop("SHF_FAILPOINTS", None)
        e.update(self.extra_env)
        argv = [BIN, "--server", self.node.endpoint, "worker", "--queue",
                self.queue, "--exec", self.exec_cmd, "--concurrency",
                str(self.concurrency)] + self.extra
        out = open(self.log, "wb")
        self.proc = _track(subprocess.Popen(argv, stdout=out,
                                            stderr=subprocess.STDOUT, env=e,
                                            preexec_fn=_pdeathsig))
        out.close()
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_connected(self, timeout=15):
        """Until the worker process holds an established TCP connection to
        its node (it polls right after connecting)."""
        def ok():
            if not self.alive():
                raise TestFailure("worker exited (code %s); log:\n%s"
                                  % (self.proc.returncode, tail(self.log)))
            return tcp_established_to(self.proc.pid, self.node.port)
        wait_for(ok, timeout, what="worker %d connected to %s"
                 % (self.proc.pid, self.node.endpoint))

    def stop(self, timeout=20):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        return self.proc.returncode

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)


# ---------------------------------------------------------------- suite

class Suite:
    """Counts checks. check() is soft (records and continues); a case that
    raises counts one failure and the suite goes on with the next case."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0
        self.failures = []
        self.env = None
        self.t0 = time.monotonic()
        if not os.path.exists(BIN):
            print("FAIL: shardflow binary not found at %s (set SHARDFLOW_BIN"
                  " or build target shardflow_cli)" % BIN)
            sys.exit(1)

    def check(self, cond, what, detail=None):
        if cond:
            self.passed += 1
            print("  ok   %s" % what)
        else:
            self.failed += 1
            msg = what if detail is None else "%s\n         %s" % (
                what, str(detail).replace("\n", "\n         "))
            self.failures.append(what)
            print("  FAIL %s" % msg)
        sys.stdout.flush()
        return bool(cond)

    def eq(self, got, want, what):
        return self.check(got == want, what, "expected %s\n got      %s"
                          % (_short(want, 800), _short(got, 800)))

    def cli_ok(self, r, what):
        """Check a CliResult exited 0; returns r.out."""
        self.check(r.rc == 0, what, r.describe())
        return r.out

    def cli_err(self, r, rc, code, what):
        ok = r.rc == rc and (code is None or r.error_code() == code)
        self.check(ok, what, "expected exit %s code %s\n%s"
                   % (rc, code, r.describe()))
        return ok

    def run(self, cases):
        """cases: list of (title, fn) or (title, fn, True) for a case the
        rest depend on (the suite stops when it raises). Runs each; prints
        the summary and exits."""
        ok = False
        try:
            for case in cases:
                title, fn = case[0], case[1]
                required = len(case) > 2 and case[2]
                print("== %s" % title)
                sys.stdout.flush()
                t = time.monotonic()
                raised = True
                try:
                    fn()
                    raised = False
                except TestFailure as e:
                    self.check(False, "%s: %s" % (title, e))
                except Exception:
                    self.check(False, "%s: unexpected exception" % title,
                               traceback.format_exc())
                print("   (%.1f s)" % (time.monotonic() - t))
                if raised and required:
                    print("   (a required case failed: the remaining "
                          "cases are not run)")
                    break
            ok = self.failed == 0
        finally:
            if self.env is not None:
                self.env.close(ok)
            _kill_all()
        print("%s: %d passed, %d failed (%.1f s)" % (
            self.name, self.passed, self.failed, time.monotonic() - self.t0))
        if self.failed:
            print("failures:")
            for f in self.failures:
                print("  - %s" % f.splitlines()[0])
        print("%d passed, %d failed" % (self.passed, self.failed))
        sys.stdout.flush()
        sys.exit(0 if ok else 1)

    def new_env(self):
        self.env = Env(self.name)
        return self.env


def events_of(history_out):
    if isinstance(history_out, dict) and isinstance(history_out.get("events"), list):
        return history_out["events"]
    return []


def steps_by_id(describe_out):
    res = {}
    if isinstance(describe_out, dict):
        for s in describe_out.get("steps") or []:
            if isinstance(s, dict):
                res[s.get("id")] = s
    return res


def find_value(obj, key):
    """First value of `key` anywhere in a JSON tree (depth-first)."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            r = find_value(v, key)
            if r is not None:
                return r
    elif isinstance(obj, list):
        for v in obj:
            r = find_value(v, key)
            if r is not None:
                return r
    return None


def contains_value(obj, want):
    """True when `want` appears as a value anywhere in a JSON tree."""
    if obj == want:
        return True
    if isinstance(obj, dict):
        return any(contains_value(v, want) for v in obj.values())
    if isinstance(obj, list):
        return any(contains_value(v, want) for v in obj)
    return False


def rfc3339_to_epoch(text):
    """Seconds since the epoch (float) of an RFC 3339 UTC time with
    milliseconds ("2026-11-22T16:00:00.123Z"), or None."""
    if not isinstance(text, str) or not RFC3339_MS.match(text):
        return None
    secs = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    return secs + int(text[20:23]) / 1000.0


def event_types(history_out):
    return [e.get("type") for e in events_of(history_out)]


def step_events(history_out, step, *types):
    """The events about `step` (of the given types, if any), in order."""
    return [e for e in events_of(history_out)
            if e.get("step") == step and (not types or e.get("type") in types)]


def pid_alive(pid):
    """True while pid exists and is not a zombie (read from /proc)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def kill_group_of(pid):
    """SIGKILL the process group of pid: a command the generic worker ran
    in its own group and left behind (a killed worker, a timed-out attempt
    never told to stop). Never the test's own group."""
    try:
        pgid = os.getpgid(pid)
        if pgid > 1 and pgid != os.getpgrp():
            os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass



MDB_FIRST, MDB_NEXT, MDB_NOTFOUND = 0, 8, -30798


class _MdbVal(ctypes.Structure):
    _fields_ = [("mv_size", ctypes.c_size_t), ("mv_data", ctypes.c_void_p)]


class ShardFile:
    """One write transaction on a stopped node's shard environment
    (DATA/shards/NNNN), through liblmdb with ctypes: to read stored
    records as they are, or to damage or rewrite them. close(commit), or
    use it as a context manager, which commits on a clean exit and aborts
    when the block raised."""

    def __init__(self, shard_dir):
        name = ctypes.util.find_library("lmdb") or "liblmdb.so.0"
        self.lib = lib = ctypes.CDLL(name)
        lib.mdb_strerror.restype = ctypes.c_char_p
        self.env = ctypes.c_void_p()
        self.ok(lib.mdb_env_create(ctypes.byref(self.env)), "mdb_env_create")
        self.ok(lib.mdb_env_set_maxdbs(self.env, 16), "mdb_env_set_maxdbs")
        self.ok(lib.mdb_env_set_mapsize(self.env, ctypes.c_size_t(1 << 30)),
                "mdb_env_set_mapsize")
        self.ok(lib.mdb_env_open(self.env, shard_dir.encode(), 0, 0o600),
                "mdb_env_open " + shard_dir)
        self.txn = ctypes.c_void_p()
        self.ok(lib.mdb_txn_begin(self.env, None, 0, ctypes.byref(self.txn)),
                "mdb_txn_begin")
        self.dbis = {}

    def ok(self, rc, what):
        if rc != 0:
            raise TestFailure("%s: %s" % (what, self.lib.mdb_strerror(rc)))

    def dbi(self, name):
        if name not in self.dbis:
            d = ctypes.c_uint()
            self.ok(self.lib.mdb_dbi_open(self.txn, name.encode(), 0,
                                          ctypes.byref(d)),
                    "mdb_dbi_open %s" % name)
            self.dbis[name] = d
        return self.dbis[name]

    def has_db(self, name):
        d = ctypes.c_uint()
        rc = self.lib.mdb_dbi_open(self.txn, name.encode(), 0, ctypes.byref(d))
        if rc == MDB_NOTFOUND:
            return False
        self.ok(rc, "mdb_dbi_open %s" % name)
        self.dbis[name] = d
        return True

    def items(self, name):
        """Every (key, value) of a database, in key order (copies)."""
        cur = ctypes.c_void_p()
        self.ok(self.lib.mdb_cursor_open(self.txn, self.dbi(name),
                                         ctypes.byref(cur)), "mdb_cursor_open")
        res = []
        k, v = _MdbVal(), _MdbVal()
        op = MDB_FIRST
        while self.lib.mdb_cursor_get(cur, ctypes.byref(k), ctypes.byref(v),
                                      op) == 0:
            res.append((ctypes.string_at(k.mv_data, k.mv_size),
                        ctypes.string_at(v.mv_data, v.mv_size)))
            op = MDB_NEXT
        self.lib.mdb_cursor_close(cur)
        return res

    @staticmethod
    def _val(b):
        buf = ctypes.create_string_buffer(b, len(b))
        return _MdbVal(len(b), ctypes.cast(buf, ctypes.c_void_p)), buf

    def get(self, name, key):
        kv, _kb = self._val(key)
        v = _MdbVal()
        rc = self.lib.mdb_get(self.txn, self.dbi(name), ctypes.byref(kv),
                              ctypes.byref(v))
        if rc == MDB_NOTFOUND:
            return None
        self.ok(rc, "mdb_get %s" % name)
        return ctypes.string_at(v.mv_data, v.mv_size)

    def put(self, name, key, value):
        kv, _kb = self._val(key)
        vv, _vb = self._val(value)
        self.ok(self.lib.mdb_put(self.txn, self.dbi(name), ctypes.byref(kv),
                                 ctypes.byref(vv), 0), "mdb_put %s" % name)

    def delete(self, name, key):
        kv, _kb = self._val(key)
        self.ok(self.lib.mdb_del(self.txn, self.dbi(name), ctypes.byref(kv),
                                 None), "mdb_del %s" % name)

    def drop(self, name):
        """Deletes the database itself from the environment."""
        self.ok(self.lib.mdb_drop(self.txn, self.dbi(name), 1),
                "mdb_drop %s" % name)
        del self.dbis[name]

    def close(self, commit):
        if self.txn:
            if commit:
                self.ok(self.lib.mdb_txn_commit(self.txn), "mdb_txn_commit")
            else:
                self.lib.mdb_txn_abort(self.txn)
            self.txn = None
        self.lib.mdb_env_close(self.env)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        self.close(kind is None)
        return False
