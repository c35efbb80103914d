"""End-to-end test harness for natshttp (Python 3.11 standard library only).

Every test runs real programs: a real nats-server, the real `nats-http`
binary, real curl, real upstream HTTP servers, all on ephemeral loopback
ports. Nothing here picks a fixed port.

A test module looks like this:

    import harness

    class GetTest(harness.E2ETestCase):
        timeout = 30                      # seconds per test (default 60)

        def test_get(self):
            nats = harness.Nats()
            harness.serve(nats, "site", harness.REPO_ROOT / "examples")
            gw = harness.gateway(nats, "site")
            rc, body, err = harness.curl("-f", gw.base + "/site/hello.txt")
            self.assertEqual(rc, 0, err)

    if __name__ == "__main__":
        harness.main()

and runs alone as `python3 tests/e2e/test_x.py [-v] [Class.test_name]`, or
under CTest (see e2e.cmake), which sets NATSHTTP_BIN and NATSHTTP_E2E_TIMEOUT.

Lifetimes. Every process started here is registered globally and killed at
exit, on SIGTERM/SIGHUP/SIGINT and when the module runs out of time, even if
a test fails or hangs; children also get SIGKILL if this Python process dies
(PR_SET_PDEATHSIG, so start long-lived processes from the main thread). A
process started inside a test (or inside setUpClass of an E2ETestCase) is
stopped when that test (or class) ends, newest first, with SIGTERM. For
nats-http processes that end is also a check: the process must exit with
status 0 within STOP_GRACE seconds of SIGTERM, and its stderr must hold no
sanitizer report (so leaks found by LeakSanitizer at exit fail the test).
Call `proc.kill()` or `proc.wait()` to take over a process's exit status
yourself, or set `proc.expect_exit`.

When a test fails, the tail of the log of every process it started is
printed to stderr. Set NATSHTTP_KEEP_TMP=1 to keep the temporary directory.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import hashlib
import json
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request
from typing import Callable, Iterable, Sequence

# --------------------------------------------------------------------------
# Configuration

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
BIN = os.environ.get("NATSHTTP_BIN") or str(REPO_ROOT / "build" / "src" / "cli" / "nats-http")
# The CMake build tree, for helper programs built beside nats-http
# (e.g. build_file("tests/echo_responder")).
BUILD_DIR = pathlib.Path(os.environ.get("NATSHTTP_BUILD_DIR")
                         or pathlib.Path(BIN).resolve().parent.parent.parent)
NATS_SERVER = (os.environ.get("NATSHTTP_NATS_SERVER") or shutil.which("nats-server")
               or "/usr/sbin/nats-server")
NGINX = os.environ.get("NATSHTTP_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
CURL = shutil.which("curl") or "curl"

DEFAULT_TEST_TIMEOUT = float(os.environ.get("NATSHTTP_TEST_TIMEOUT", "60"))
START_TIMEOUT = float(os.environ.get("NATSHTTP_START_TIMEOUT", "20"))
STOP_GRACE = float(os.environ.get("NATSHTTP_STOP_GRACE", "5"))
CURL_MAX_TIME = 30

# The lines nats-http prints when it is ready (see README / docs).
SERVE_READY = r"\bready\b"
GATEWAY_READY = (r"^(?=.*\bready\b).*?listening on "
                 r"(?P<scheme>https?)://(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(?P<port>\d+)")

SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "SUMMARY: UndefinedBehaviorSanitizer",
    "runtime error: ",          # UBSan diagnostics
    "WARNING: ThreadSanitizer",
)


def build_file(relpath: str) -> pathlib.Path:
    """A file in the build tree; fails clearly if it was not built."""
    p = BUILD_DIR / relpath
    if not p.exists():
        raise FileNotFoundError(f"{p} not built (NATSHTTP_BUILD_DIR={BUILD_DIR})")
    return p


class TestTimeout(Exception):
    """Raised inside a test that ran longer than its timeout."""


class ProcError(Exception):
    """A process did not start, or died before it was ready."""


# --------------------------------------------------------------------------
# Temporary directories

_session_dir: pathlib.Path | None = None
_tmp_counter = 0
_lock = threading.RLock()


def session_dir() -> pathlib.Path:
    """The one temporary directory of this run; removed at exit."""
    global _session_dir
    with _lock:
        if _session_dir is None:
            _session_dir = pathlib.Path(tempfile.mkdtemp(prefix="natshttp-e2e-"))
        return _session_dir


def tmpdir(name: str = "tmp") -> pathlib.Path:
    """A fresh, empty directory inside the session directory."""
    global _tmp_counter
    with _lock:
        _tmp_counter += 1
        n = _tmp_counter
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40] or "tmp"
    d = session_dir() / f"{n:03d}-{safe}"
    d.mkdir()
    return d


# --------------------------------------------------------------------------
# Process registry and cleanup

_live: list["Proc"] = []
_test_owner: unittest.TestCase | None = None
_class_owner: type | None = None
_cleaned_up = False


def _register(proc: "Proc") -> None:
    with _lock:
        _live.append(proc)
    owner = _test_owner
    if owner is not None:
        owner.addCleanup(proc._finish)
        owner._e2e_procs.append(proc)  # type: ignore[attr-defined]
    elif _class_owner is not None:
        _class_owner.addClassCleanup(proc._finish)  # type: ignore[attr-defined]
        _class_owner._e2e_class_procs.append(proc)  # type: ignore[attr-defined]


def _unregister(proc: "Proc") -> None:
    with _lock:
        if proc in _live:
            _live.remove(proc)


def cleanup_all(grace: float = 1.0) -> None:
    """Stop every process still running (newest first) and remove temp dirs."""
    global _cleaned_up
    with _lock:
        procs = list(reversed(_live))
    for p in procs:
        try:
            p.stop(grace=grace, check=False)
        except Exception:  # pragma: no cover - best effort at exit
            pass
    with _lock:
        if _cleaned_up:
            return
        _cleaned_up = True
    if _session_dir is not None:
        if os.environ.get("NATSHTTP_KEEP_TMP") == "1":
            print(f"harness: kept {_session_dir}", file=sys.stderr)
        else:
            shutil.rmtree(_session_dir, ignore_errors=True)


def _dump_logs(procs: Iterable["Proc"], lines: int = 60) -> None:
    for p in procs:
        try:
            print(p.describe_tail(lines), file=sys.stderr)
        except Exception:
            pass


def _fatal_signal(signum, frame):  # noqa: ARG001
    print(f"\nharness: got signal {signum}; stopping everything", file=sys.stderr)
    with _lock:
        procs = list(reversed(_live))
    _dump_logs(procs, 30)
    cleanup_all(grace=0)
    os._exit(128 + signum)


def _alarm(signum, frame):  # noqa: ARG001
    if _test_owner is not None:
        raise TestTimeout(f"{_test_owner.id()} exceeded its timeout")
    _fatal_signal(signum, frame)


atexit.register(cleanup_all)
for _sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, _fatal_signal)
signal.signal(signal.SIGALRM, _alarm)

_SETPRIV = shutil.which("setpriv")
_libc = None


def _death_signal_preexec() -> None:  # used only when setpriv is missing
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


if _SETPRIV is None:
    try:
        _libc = ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover
        _libc = None


# --------------------------------------------------------------------------
# Processes

def _read_text(path: pathlib.Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _proc_status(pid: int) -> dict[str, str]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def sanitizer_report(text: str) -> str | None:
    """The first sanitizer diagnostic line in text, or None."""
    for line in text.splitlines():
        if any(m in line for m in SANITIZER_MARKERS):
            return line
    return None


class Proc:
    """A child process whose stderr (and stdout) go to files in a temp dir.

    Proc(args, ready=REGEX) starts the process and waits until REGEX matches
    its stderr (None: do not wait); the match is in `.match`.
    """

    def __init__(self, args: Sequence, *, name: str | None = None,
                 ready: str | None = r"\bready\b", timeout: float = START_TIMEOUT,
                 env: dict | None = None, cwd=None, directory: pathlib.Path | None = None,
                 merge_stdout: bool = False, expect_exit: int | None = None,
                 sanitizer_check: bool = False, stdin=None):
        self.args = [str(a) for a in args]
        self.name = name or os.path.basename(self.args[0])
        self.dir = directory or tmpdir(self.name)
        self.log_path = self.dir / f"{self.name}.stderr.log"
        self.out_path = self.log_path if merge_stdout else self.dir / f"{self.name}.stdout.log"
        self.expect_exit = expect_exit
        self.sanitizer_check = sanitizer_check
        self.match: re.Match | None = None
        self._killed_by_harness = False
        self._finished = False

        full_env = dict(os.environ)
        full_env.pop("NATS_URL", None)   # never reach a server by accident
        if env:
            full_env.update({k: str(v) for k, v in env.items()})

        prefix = [_SETPRIV, "--pdeathsig", "KILL", "--"] if _SETPRIV else []
        self._log = open(self.log_path, "ab")
        self._out = self._log if merge_stdout else open(self.out_path, "ab")
        try:
            self.popen = subprocess.Popen(
                prefix + self.args, stdin=subprocess.DEVNULL if stdin is None else stdin,
                stdout=self._out, stderr=self._log, env=full_env, cwd=cwd,
                start_new_session=True,
                preexec_fn=None if _SETPRIV else _death_signal_preexec)
        except BaseException:
            self._close_files()
            raise
        self.started_at = time.monotonic()
        _register(self)
        if ready is not None:
            self.match = self.wait_for(ready, timeout)

    # -- state
    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        """Everything the process wrote to stderr so far."""
        return _read_text(self.log_path)

    def stdout_bytes(self) -> bytes:
        try:
            return self.out_path.read_bytes()
        except FileNotFoundError:
            return b""

    def log_size(self) -> int:
        """Bytes of stderr so far; pass as `since` to wait_for new lines only."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def describe_tail(self, lines: int = 60) -> str:
        tail = "\n".join(self.log_text().splitlines()[-lines:])
        return (f"---- {self.name} (pid {self.pid}, exit {self.returncode}): "
                f"{' '.join(self.args)}\n---- last {lines} lines of {self.log_path}:\n"
                f"{tail}\n---- end of {self.name}")

    # -- waiting
    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT, since: int = 0,
                 stream: str = "stderr", flags: int = re.MULTILINE) -> re.Match:
        """Wait until `pattern` matches the process's output (from byte `since`).

        Raises ProcError if the process exits first, TimeoutError on timeout.
        """
        rx = re.compile(pattern, flags)
        path = self.log_path if stream == "stderr" else self.out_path
        deadline = time.monotonic() + timeout
        while True:
            exited = self.popen.poll() is not None
            try:
                with open(path, "rb") as f:
                    f.seek(since)
                    text = f.read().decode("utf-8", "replace")
            except FileNotFoundError:
                text = ""
            m = rx.search(text)
            if m:
                return m
            if exited:
                raise ProcError(f"{self.name} exited with status {self.returncode} before "
                                f"printing /{pattern}/\n{self.describe_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not print /{pattern}/ within "
                                   f"{timeout}s\n{self.describe_tail()}")
            time.sleep(0.02)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit by itself; the caller now owns its status."""
        self.expect_exit = None
        rc = self.popen.wait(timeout)
        self._close_files()
        return rc

    # -- stopping
    def signal(self, sig: int) -> None:
        if self.alive():
            self.popen.send_signal(sig)

    def stop(self, grace: float = STOP_GRACE, check: bool = False) -> int:
        """SIGTERM, then SIGKILL (whole process group) after `grace` seconds."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self._killed_by_harness = True
                self._kill_group()
        self._kill_group_leftovers()
        self._close_files()
        _unregister(self)
        if check:
            self._finished = True     # checked now; the owner's cleanup will not repeat it
            self._check_exit()
        return self.popen.returncode

    def kill(self) -> int:
        """SIGKILL now; the caller owns the exit status (no exit check)."""
        self.expect_exit = None
        self._kill_group()
        self._close_files()
        _unregister(self)
        return self.popen.returncode

    def _kill_group(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass

    def _kill_group_leftovers(self) -> None:
        # grandchildren left in the process group (e.g. nginx workers)
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _close_files(self) -> None:
        for f in {self._log, self._out}:
            try:
                f.close()
            except Exception:
                pass

    def _check_exit(self) -> None:
        problems = []
        if self.sanitizer_check:
            line = sanitizer_report(self.log_text())
            if line:
                problems.append(f"sanitizer report: {line}")
        if self._killed_by_harness and self.expect_exit is not None:
            problems.append(f"did not exit within {STOP_GRACE}s of SIGTERM (killed)")
        elif self.expect_exit is not None and self.popen.returncode != self.expect_exit:
            problems.append(f"exit status {self.popen.returncode}, expected {self.expect_exit}")
        if problems:
            raise AssertionError(f"{self.name} (pid {self.pid}): " + "; ".join(problems)
                                 + "\n" + self.describe_tail())

    def _finish(self) -> None:
        """Cleanup hook of the owning test: stop, then check the exit."""
        if self._finished:
            return
        self._finished = True
        self.stop(check=True)

    # -- resource use (None once the process is gone)
    def _status_kib(self, key: str) -> int | None:
        v = _proc_status(self.pid).get(key)
        return int(v.split()[0]) if v else None

    def peak_rss_kib(self) -> int | None:
        """Peak resident set size (VmHWM) in KiB."""
        return self._status_kib("VmHWM")

    def rss_kib(self) -> int | None:
        return self._status_kib("VmRSS")

    def threads(self) -> int | None:
        v = _proc_status(self.pid).get("Threads")
        return int(v) if v else None

    def open_fds(self) -> int | None:
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except (FileNotFoundError, ProcessLookupError):
            return None


# --------------------------------------------------------------------------
# HTTP and TCP helpers

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 10) -> bytes:
    """GET url directly (never through a proxy) and return the body."""
    with _no_proxy.open(url, timeout=timeout) as r:
        return r.read()


def wait_until(predicate: Callable[[], object], timeout: float = 10, interval: float = 0.05,
               message: str = "condition") -> object:
    """Poll predicate until it returns a true value; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"{message} not reached within {timeout}s")
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def unused_port() -> int:
    """A loopback port that nothing listened on a moment ago (for 'refused')."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# nats-server

def _url_of(nats: "Nats | str") -> str:
    return nats.url if isinstance(nats, Nats) else str(nats)


class Nats:
    """A nats-server on ephemeral loopback ports, in a fresh temp dir.

    `config` is configuration file text (e.g. "max_payload: 65536", or an
    `authorization { users = [...] }` block); the command-line host/port
    options given here override any in it. `args` are extra command-line
    options.
    """

    def __init__(self, config: str = "", *args, name: str = "nats",
                 timeout: float = START_TIMEOUT):
        self.name = name
        self.config = config
        self.extra_args = [str(a) for a in args]
        self.timeout = timeout
        self.dir = tmpdir(name)
        self.conf_path: pathlib.Path | None = None
        if config:
            self.conf_path = self.dir / "nats.conf"
            self.conf_path.write_text(config + "\n")
        self.proc: Proc | None = None
        self._start(-1, -1)

    def _start(self, port: int, monitor_port: int) -> None:
        cmd = [NATS_SERVER, "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor_port),
               "--ports_file_dir", str(self.dir)]
        if self.conf_path:
            cmd += ["-c", str(self.conf_path)]
        cmd += self.extra_args
        self.proc = Proc(cmd, name=self.name, ready=None, directory=self.dir)
        ports_file = self.dir / f"nats-server_{self.proc.pid}.ports"
        want_cluster = re.search(r"^\s*cluster\b", self.config, re.M) is not None
        want_leaf = re.search(r"\bleafnodes\s*[:=]?\s*\{[^}]*\blisten\b", self.config) is not None

        def ports():
            if not self.proc.alive():
                raise ProcError(f"nats-server exited with status {self.proc.returncode}\n"
                                f"{self.proc.describe_tail()}")
            try:
                data = json.loads(ports_file.read_text())
            except (FileNotFoundError, ValueError):
                return None
            if not data.get("nats") or not data.get("monitoring"):
                return None
            if want_cluster and not data.get("cluster"):
                return None
            return data

        self.ports = wait_until(ports, self.timeout, 0.02, f"{ports_file}")
        self.url = self.ports["nats"][0]
        self.monitor_url = self.ports["monitoring"][0]
        self.port = urllib.parse.urlsplit(self.url).port
        self.monitor_port = urllib.parse.urlsplit(self.monitor_url).port
        self.cluster_url = (self.ports.get("cluster") or [None])[0]
        self.leafnode_url: str | None = None
        if want_leaf:
            m = self.proc.wait_for(r"Listening for leafnode connections on (\S+):(\d+)",
                                   self.timeout)
            self.leafnode_url = f"nats-leaf://127.0.0.1:{m.group(2)}"
        wait_until(lambda: port_open(self.port), self.timeout, 0.02, f"{self.url} accepting")
        self.baseline_subs = self.subsz()

    # -- monitoring
    def monitor(self, path: str, **params) -> dict:
        """GET a monitoring endpoint (e.g. "varz", "connz", "routez") as JSON."""
        q = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        return json.loads(http_get(f"{self.monitor_url}/{path.lstrip('/')}" + (f"?{q}" if q else "")))

    def subsz(self) -> int:
        """Number of subscriptions on the server (num_subscriptions).

        Includes the server's own internal subscriptions; compare with
        `baseline_subs` (the count right after start) or use subs_matching().
        """
        return int(self.monitor("subsz")["num_subscriptions"])

    def subs_matching(self, subject: str) -> int:
        """How many subscriptions a message published to `subject` would match."""
        data = self.monitor("subsz", subs=1, test=subject, limit=100000)
        return len(data.get("subscriptions_list") or [])

    def wait_subs(self, subject: str, count: int = 1, timeout: float = 10) -> int:
        """Wait until at least `count` subscriptions match a publish to `subject`."""
        def enough():
            n = self.subs_matching(subject)
            return n if n >= count else 0
        return wait_until(enough, timeout, 0.05, f"{count} subscription(s) matching {subject!r}")

    def varz(self) -> dict:
        return self.monitor("varz")

    def connz(self, **params) -> dict:
        return self.monitor("connz", **params)

    def client_url(self, user: str | None = None, password: str | None = None,
                   token: str | None = None) -> str:
        """The client URL with credentials embedded."""
        cred = ""
        if token is not None:
            cred = urllib.parse.quote(token, safe="") + "@"
        elif user is not None:
            cred = urllib.parse.quote(user, safe="")
            if password is not None:
                cred += ":" + urllib.parse.quote(password, safe="")
            cred += "@"
        return f"nats://{cred}127.0.0.1:{self.port}"

    # -- lifecycle
    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        return self.proc.log_text()

    def stop(self) -> int:
        return self.proc.stop()

    def kill(self) -> int:
        return self.proc.kill()

    def restart(self, kill: bool = False) -> None:
        """Stop (or kill) and start again on the same client and monitoring ports."""
        if kill:
            self.proc.kill()
        else:
            self.proc.stop()
        self.proc._finished = True
        self._start(self.port, self.monitor_port)


def cluster(n: int = 3, config: str = "", name: str = "c") -> list[Nats]:
    """n nats-servers routed into one cluster; waits until fully meshed."""
    nodes: list[Nats] = []
    for i in range(n):
        routes = ", ".join(f'"{x.cluster_url}"' for x in nodes)
        conf = (f"server_name: {name}{i}\n"
                f"cluster {{\n  name: {name}\n  listen: \"127.0.0.1:-1\"\n"
                + (f"  routes: [{routes}]\n" if routes else "") + f"}}\n{config}")
        nodes.append(Nats(conf, name=f"{name}{i}"))
    for node in nodes:
        wait_until(lambda node=node: node.monitor("routez").get("num_routes", 0) >= n - 1,
                   START_TIMEOUT, 0.05, f"{node.name} routed to {n - 1} peers")
    return nodes


def leaf_pair(hub_config: str = "", leaf_config: str = "") -> tuple[Nats, Nats]:
    """A hub nats-server and a leaf node connected to it; waits for the link."""
    hub = Nats(f"server_name: hub\nleafnodes {{ listen: \"127.0.0.1:-1\" }}\n{hub_config}",
               name="hub")
    leaf = Nats(f"server_name: leaf\nleafnodes {{ remotes: [ {{ url: \"{hub.leafnode_url}\" }} ] }}\n"
                f"{leaf_config}", name="leaf")
    wait_until(lambda: hub.monitor("leafz").get("leafnodes", 0) >= 1, START_TIMEOUT, 0.05,
               "leaf node connected to hub")
    return hub, leaf


# --------------------------------------------------------------------------
# nats-http

class Gateway(Proc):
    """A `nats-http gateway` process; `.host`, `.port`, `.base` (http://127.0.0.1:PORT)."""

    def __init__(self, args, **kw):
        super().__init__(args, ready=GATEWAY_READY, **kw)
        host = self.match.group("host")
        self.port = int(self.match.group("port"))
        if host in ("0.0.0.0", "[::]", "*", ""):
            host = "127.0.0.1"
        self.host = host
        self.base = f"{self.match.group('scheme')}://{host}:{self.port}"
        self.url = self.base


_ACCESS_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_access(line: str) -> dict[str, str] | None:
    """The fields of one access-log line (docs/cli.md, "Access log"), or None.

    `... gateway: access client=127.0.0.1 method=GET target=/x status=200 ...`
    gives {"component": "gateway", "client": "127.0.0.1", "method": "GET", ...};
    quoted values are unquoted.
    """
    m = re.search(r" (\w+): access (\w+=.*)$", line)
    if not m:
        return None
    fields = {"component": m.group(1)}
    for k, v in _ACCESS_FIELD.findall(m.group(2)):
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = re.sub(r'\\(.)', r'\1', v[1:-1])
        fields[k] = v
    return fields


def access_entries(text: str, **match: str) -> list[dict[str, str]]:
    """Every access-log entry in text whose fields equal the given ones."""
    out = []
    for line in text.splitlines():
        e = parse_access(line)
        if e is not None and all(e.get(k) == v for k, v in match.items()):
            out.append(e)
    return out


def nats_http_proc(subcommand: str, *args, name: str | None = None, ready=SERVE_READY,
                   **kw) -> Proc:
    """Start `nats-http SUBCOMMAND ARGS...` as a checked Proc."""
    return Proc([BIN, subcommand, *args], name=name or subcommand, ready=ready,
                expect_exit=0, sanitizer_check=True, **kw)


def serve(nats: "Nats | str", subject: str, dir, *extra, group: str | None = None,
          name: str = "serve", **kw) -> Proc:
    """`nats-http serve --subject S --dir DIR --server URL [--group G] EXTRA...`.

    Returns once the ready line (SERVE_READY) is on stderr.
    """
    args = ["--subject", subject, "--dir", str(dir), "--server", _url_of(nats)]
    if group is not None:
        args += ["--group", group]
    return nats_http_proc("serve", *args, *extra, name=name, **kw)


def serve_upstream(nats: "Nats | str", subject: str, upstream: str, *extra,
                   group: str | None = None, name: str = "serve", **kw) -> Proc:
    """`nats-http serve --subject S --upstream URL --server URL ...`."""
    args = ["--subject", subject, "--upstream", upstream, "--server", _url_of(nats)]
    if group is not None:
        args += ["--group", group]
    return nats_http_proc("serve", *args, *extra, name=name, **kw)


def gateway(nats: "Nats | str", subject: str, *extra, listen: str = "127.0.0.1:0",
            name: str = "gateway", **kw) -> Gateway:
    """`nats-http gateway --listen 127.0.0.1:0 --subject S --server URL EXTRA...`.

    Waits for the ready line and reads the port from `listening on http://H:P`.
    """
    return Gateway([BIN, "gateway", "--listen", listen, "--subject", subject,
                    "--server", _url_of(nats), *extra], name=name, expect_exit=0,
                   sanitizer_check=True, **kw)


def nats_http(*args, env: dict | None = None, input: bytes | None = None,
              timeout: float = 60, cwd=None) -> tuple[int, bytes, str]:
    """Run `nats-http ARGS...` to completion: (returncode, stdout, stderr).

    Fails the test if stderr holds a sanitizer report.
    """
    full_env = dict(os.environ)
    full_env.pop("NATS_URL", None)
    if env:
        full_env.update({k: str(v) for k, v in env.items()})
    r = subprocess.run([BIN, *map(str, args)], input=input, capture_output=True,
                       env=full_env, timeout=timeout, cwd=cwd,
                       stdin=None if input is not None else subprocess.DEVNULL)
    err = r.stderr.decode("utf-8", "replace")
    line = sanitizer_report(err)
    if line:
        raise AssertionError(f"nats-http {' '.join(map(str, args))}: sanitizer report: "
                             f"{line}\n{err}")
    return r.returncode, r.stdout, err


def request(nats: "Nats | str", *args, env: dict | None = None, **kw) -> tuple[int, bytes, str]:
    """`nats-http request ARGS...` with NATS_URL pointing at `nats`."""
    e = {"NATS_URL": _url_of(nats)}
    e.update(env or {})
    return nats_http("request", *args, env=e, **kw)


# --------------------------------------------------------------------------
# Upstream HTTP servers (for `serve --upstream`)

class HttpUpstream(Proc):
    """Python's http.server on an ephemeral port serving `directory` (HTTP/1.0)."""

    def __init__(self, directory, name: str = "http-upstream", **kw):
        super().__init__([sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1",
                          "--directory", str(directory), "0"],
                         name=name, ready=r"Serving HTTP on \S+ port (\d+)",
                         merge_stdout=True, **kw)
        self.port = int(self.match.group(1))
        self.base = f"http://127.0.0.1:{self.port}"
        wait_until(lambda: port_open(self.port), START_TIMEOUT, 0.02, "http.server accepting")


class Nginx(Proc):
    """nginx in the foreground on an ephemeral loopback port.

    `root` is the document root; `server_conf` is extra text inside the
    `server { }` block (locations etc.), `http_conf` extra text in `http { }`.
    Logs: stderr (error log) and `.access_log`.
    """

    def __init__(self, root, server_conf: str = "", http_conf: str = "", name: str = "nginx",
                 **kw):
        d = tmpdir(name)
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (d / sub).mkdir()
        last_error = None
        for _attempt in range(5):
            port = unused_port()
            conf = d / "nginx.conf"
            conf.write_text(
                ("user root;\n" if os.geteuid() == 0 else "")
                + f"daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\n"
                f"error_log stderr notice;\nevents {{ worker_connections 512; }}\n"
                f"http {{\n  include /etc/nginx/mime.types;\n"
                f"  default_type application/octet-stream;\n"
                f"  access_log {d}/access.log;\n"
                f"  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n"
                f"  fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi;\n"
                f"  scgi_temp_path {d}/scgi;\n{http_conf}\n"
                f"  server {{\n    listen 127.0.0.1:{port};\n    root {root};\n"
                f"{server_conf}\n  }}\n}}\n")
            super().__init__([NGINX, "-p", str(d), "-c", str(conf), "-e", "stderr"],
                             name=name, ready=None, directory=d, **kw)
            try:
                wait_until(lambda: port_open(port) or not self.alive(), START_TIMEOUT, 0.02,
                           "nginx accepting")
            except TimeoutError as e:
                last_error = e
                self.stop()
                continue
            if self.alive():
                break
            last_error = ProcError(f"nginx exited\n{self.describe_tail()}")
            self.stop()
        else:
            raise ProcError(f"nginx did not start: {last_error}")
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.access_log = d / "access.log"


# --------------------------------------------------------------------------
# Clients

def curl(*args, max_time: float = CURL_MAX_TIME, input: bytes | None = None,
         timeout: float | None = None) -> tuple[int, bytes, str]:
    """Run `curl -sS --noproxy '*' --max-time T ARGS...`: (rc, stdout, stderr)."""
    cmd = [CURL, "-sS", "--noproxy", "*", "--max-time", str(max_time), *map(str, args)]
    r = subprocess.run(cmd, input=input, capture_output=True,
                       stdin=None if input is not None else subprocess.DEVNULL,
                       timeout=timeout if timeout is not None else max_time + 15)
    return r.returncode, r.stdout, r.stderr.decode("utf-8", "replace")


def raw_http(port: int, data: "bytes | Sequence[bytes]", read_timeout: float = 5,
             host: str = "127.0.0.1", pause: float = 0, shutdown_write: bool = False,
             detail: bool = False):
    """Send hand-written bytes over one TCP connection; return all bytes read.

    `data` is bytes, or a sequence of bytes objects sent with `pause` seconds
    between them. Reading stops when the peer closes, resets, or sends nothing
    for `read_timeout` seconds. With detail=True returns (bytes, how) where how
    is "closed", "reset" or "timeout".
    """
    parts = [data] if isinstance(data, (bytes, bytearray)) else list(data)
    got = bytearray()
    how = "closed"
    with socket.create_connection((host, port), timeout=read_timeout) as s:
        try:
            for i, part in enumerate(parts):
                if i and pause:
                    time.sleep(pause)
                s.sendall(part)
            if shutdown_write:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            how = "reset"
        while how != "reset":
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                how = "timeout"
                break
            except ConnectionResetError:
                how = "reset"
                break
            if not chunk:
                break
            got += chunk
    return (bytes(got), how) if detail else bytes(got)


class HttpResponse:
    """One parsed HTTP/1.x response (see parse_http_response)."""

    def __init__(self, version: str, status: int, reason: str, headers: list[tuple[str, str]],
                 body: bytes, complete: bool, trailers: list[tuple[str, str]]):
        self.version, self.status, self.reason = version, status, reason
        self.headers, self.body, self.complete, self.trailers = headers, body, complete, trailers

    def header(self, name: str, default: str | None = None) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self) -> str:
        return (f"<HttpResponse {self.status} {self.reason!r} headers={self.headers} "
                f"body={len(self.body)} bytes complete={self.complete}>")


def _parse_fields(block: bytes) -> list[tuple[str, str]]:
    out = []
    for line in block.split(b"\r\n"):
        if not line:
            continue
        k, sep, v = line.partition(b":")
        if not sep:
            raise ValueError(f"bad header line {line!r}")
        out.append((k.decode("latin-1"), v.strip().decode("latin-1")))
    return out


def parse_http_response(data: bytes, method: str = "GET") -> tuple[HttpResponse, bytes]:
    """Parse one response from the start of `data`: (response, remaining bytes).

    Bodies: none for HEAD, 1xx, 204, 304; chunked; Content-Length; else up to
    the end of `data` (close-delimited). `complete` is False when the body is
    cut short. Raises ValueError if the head itself is incomplete or invalid.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise ValueError(f"incomplete response head: {data[:200]!r}")
    status_line, _, fields = data[:end].partition(b"\r\n")
    m = re.match(rb"(HTTP/\d\.\d) (\d{3})(?: (.*))?$", status_line)
    if not m:
        raise ValueError(f"bad status line {status_line!r}")
    version, status = m.group(1).decode(), int(m.group(2))
    reason = (m.group(3) or b"").decode("latin-1")
    headers = _parse_fields(fields)
    rest = data[end + 4:]
    resp = HttpResponse(version, status, reason, headers, b"", True, [])
    te = (resp.header("Transfer-Encoding") or "").lower()
    if method.upper() == "HEAD" or 100 <= status < 200 or status in (204, 304):
        return resp, rest
    if "chunked" in te:
        body = bytearray()
        pos = 0
        while True:
            eol = rest.find(b"\r\n", pos)
            if eol < 0:
                resp.complete = False
                break
            size = int(rest[pos:eol].split(b";")[0].strip() or b"0", 16)
            pos = eol + 2
            if size == 0:
                if rest[pos:pos + 2] == b"\r\n":     # no trailers
                    pos += 2
                    break
                tend = rest.find(b"\r\n\r\n", pos - 2)
                if tend >= 0:
                    resp.trailers = _parse_fields(rest[pos:tend])
                    pos = tend + 4
                else:
                    resp.complete = False
                    pos = len(rest)
                break
            if len(rest) < pos + size + 2:
                body += rest[pos:pos + size]
                resp.complete = False
                pos = len(rest)
                break
            body += rest[pos:pos + size]
            pos += size + 2
        resp.body = bytes(body)
        return resp, rest[pos:]
    cl = resp.header("Content-Length")
    if cl is not None:
        n = int(cl)
        resp.body = rest[:n]
        resp.complete = len(resp.body) == n
        return resp, rest[n:]
    resp.body = rest
    return resp, b""


def parse_http_responses(data: bytes, methods: Sequence[str] = ()) -> list[HttpResponse]:
    """Parse every response in `data` (a keep-alive stream).

    `methods[i]` is the method of the i-th request (default GET), needed to
    know that a HEAD answer has no body. 1xx responses are returned too and do
    not consume a method.
    """
    out = []
    i = 0
    while data:
        method = methods[i] if i < len(methods) else "GET"
        resp, data = parse_http_response(data, method)
        out.append(resp)
        if not 100 <= resp.status < 200:
            i += 1
    return out


# --------------------------------------------------------------------------
# Files

def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(functools.partial(f.read, 1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_random_file(path, size: int, seed: int = 0) -> str:
    """Write `size` pseudo-random bytes (same seed, same bytes); return sha256 hex.

    About 0.5 GiB/s.
    """
    rng = random.Random(seed)
    h = hashlib.sha256()
    left = size
    with open(path, "wb") as f:
        while left > 0:
            n = min(left, 1 << 20)
            block = rng.randbytes(n)
            f.write(block)
            h.update(block)
            left -= n
    return h.hexdigest()


# --------------------------------------------------------------------------
# Test case base class and entry point

def timeout(seconds: float):
    """Decorator: per-test timeout in seconds (overrides the class's `timeout`)."""
    def deco(fn):
        fn.e2e_timeout = seconds
        return fn
    return deco


class E2ETestCase(unittest.TestCase):
    """unittest.TestCase with a per-test timeout and process ownership.

    Processes started during a test are stopped and checked when it ends;
    those started in setUpClass (call super().setUpClass() first if you
    override it) when the class ends.
    """

    timeout = DEFAULT_TEST_TIMEOUT

    @classmethod
    def setUpClass(cls):
        global _class_owner
        super().setUpClass()
        cls._e2e_class_procs = []
        _class_owner = cls
        cls.addClassCleanup(cls._e2e_release_class)

    @classmethod
    def _e2e_release_class(cls):
        global _class_owner
        if _class_owner is cls:
            _class_owner = None

    def tmpdir(self, name: str = "tmp") -> pathlib.Path:
        return tmpdir(name)

    def run(self, result=None):
        global _test_owner
        if result is None:
            result = self.defaultTestResult()
        method = getattr(self, self._testMethodName, None)
        limit = getattr(method, "e2e_timeout", self.timeout)
        before = len(result.failures) + len(result.errors)
        self._e2e_procs = []
        outer_owner = _test_owner          # a test may run another (harness self-test)
        _test_owner = self
        started = time.monotonic()
        outer_left, _ = signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            return super().run(result)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            _test_owner = outer_owner
            if outer_left:
                signal.setitimer(signal.ITIMER_REAL,
                                 max(outer_left - (time.monotonic() - started), 0.001))
            if len(result.failures) + len(result.errors) > before:
                _dump_logs(self._e2e_procs + list(getattr(type(self), "_e2e_class_procs", [])))

    # -- assertions that say what differs without dumping megabytes
    def assertBytesEqual(self, first: bytes, second: bytes, msg: str | None = None):
        if first == second:
            return
        n = min(len(first), len(second))
        at = next((i for i in range(n) if first[i] != second[i]), n)
        detail = (f"bytes differ: len {len(first)} vs {len(second)}, sha256 "
                  f"{sha256_bytes(first)[:16]} vs {sha256_bytes(second)[:16]}, first difference "
                  f"at offset {at}: {first[at:at + 32]!r} vs {second[at:at + 32]!r}")
        self.fail(f"{msg}: {detail}" if msg else detail)


def _start_watchdog() -> None:
    """Stop everything shortly before CTest's own timeout would SIGKILL us."""
    budget = os.environ.get("NATSHTTP_E2E_TIMEOUT")
    if not budget:
        return
    delay = max(float(budget) - 5, float(budget) * 0.9, 1)

    def fire():
        time.sleep(delay)
        print(f"\nharness: module ran out of time ({budget}s); stopping everything",
              file=sys.stderr)
        with _lock:
            procs = list(reversed(_live))
        _dump_logs(procs, 30)
        cleanup_all(grace=0)
        os._exit(124)

    threading.Thread(target=fire, name="e2e-watchdog", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the tests of __main__; exit 0 if all passed, 77 if all skipped, 1 otherwise."""
    _start_watchdog()
    prog = unittest.main(module="__main__", argv=argv, exit=False, verbosity=2)
    r = prog.result
    cleanup_all()
    if not r.wasSuccessful():
        code = 1
    elif r.testsRun == 0:
        print("harness: no test ran", file=sys.stderr)
        code = 1
    elif len(r.skipped) == r.testsRun:
        code = 77
    else:
        code = 0
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)
