"""Self-test of the e2e harness: real nats-server, real curl, no nats-http."""

import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import unittest

import harness

HERE = pathlib.Path(__file__).resolve().parent


def py_child(code: str) -> list[str]:
    """argv running a small Python program (dedented)."""
    return [sys.executable, "-c", textwrap.dedent(code)]


class NatsServerTest(harness.E2ETestCase):
    timeout = 60

    def test_start_subsz_stop(self):
        nats = harness.Nats()
        self.assertRegex(nats.url, r"^nats://127\.0\.0\.1:\d+$")
        self.assertRegex(nats.monitor_url, r"^http://127\.0\.0\.1:\d+$")
        n = nats.subsz()
        self.assertIsInstance(n, int)
        self.assertGreaterEqual(n, 0)
        self.assertEqual(nats.varz()["port"], nats.port)
        self.assertEqual(nats.subs_matching("no.such.subject"), 0)
        self.assertIsInstance(nats.connz()["num_connections"], int)
        nats.stop()
        self.assertFalse(nats.proc.alive())
        self.assertFalse(harness.port_open(nats.port))

    def test_config_text(self):
        nats = harness.Nats("max_payload: 65536")
        self.assertEqual(nats.varz()["max_payload"], 65536)

    def test_two_servers_have_distinct_ports(self):
        a, b = harness.Nats(name="a"), harness.Nats(name="b")
        self.assertNotEqual(a.port, b.port)
        self.assertNotEqual(a.monitor_port, b.monitor_port)

    def test_restart_keeps_ports(self):
        nats = harness.Nats()
        port, old_pid = nats.port, nats.pid
        nats.restart(kill=True)
        self.assertEqual(nats.port, port)
        self.assertNotEqual(nats.pid, old_pid)
        self.assertTrue(harness.port_open(port))

    def test_cluster_of_two(self):
        a, b = harness.cluster(2)
        self.assertEqual(a.monitor("routez")["num_routes"], 1)
        self.assertEqual(b.monitor("routez")["num_routes"], 1)

    def test_leaf_node(self):
        hub, leaf = harness.leaf_pair()
        self.assertTrue(hub.leafnode_url.startswith("nats-leaf://127.0.0.1:"))
        self.assertGreaterEqual(leaf.monitor("leafz")["leafnodes"], 1)

    def test_client_url(self):
        nats = harness.Nats(textwrap.dedent("""
            authorization {
              users = [ { user: "reader", password: "p@ss" } ]
            }"""))
        self.assertEqual(nats.client_url("reader", "p@ss"),
                         f"nats://reader:p%40ss@127.0.0.1:{nats.port}")


class ProcTest(harness.E2ETestCase):
    timeout = 30

    def test_ready_match_and_resources(self):
        p = harness.Proc(py_child("""
            import sys, time
            sys.stderr.write("2026-12-03T14:40:00.123Z info serve: ready subject=demo dir=/x\\n")
            sys.stderr.flush()
            time.sleep(60)
            """), name="fake-serve")
        self.assertIn("ready", p.match.group(0))
        self.assertIsInstance(p.peak_rss_kib(), int)
        self.assertGreater(p.peak_rss_kib(), 0)
        self.assertGreaterEqual(p.threads(), 1)
        self.assertGreaterEqual(p.open_fds(), 3)
        self.assertIn("subject=demo", p.log_text())
        rc = p.stop()
        self.assertEqual(rc, -signal.SIGTERM)
        self.assertIsNone(p.peak_rss_kib())

    def test_serve_ready_line_matches(self):
        line = "2026-12-03T14:40:00.123Z info serve: ready subject=demo dir=/x"
        self.assertRegex(line, harness.SERVE_READY)

    def test_gateway_ready_line_matches(self):
        for line, host, port in [
            ("2026-12-03T14:40:00.123Z info gateway: ready listening on "
             "http://127.0.0.1:38211 subject=demo", "127.0.0.1", "38211"),
            ("x gateway: listening on http://[::1]:8080/ ready", "[::1]", "8080"),
        ]:
            m = re.search(harness.GATEWAY_READY, line, re.M)
            self.assertIsNotNone(m, line)
            self.assertEqual((m.group("host"), m.group("port")), (host, port))
        self.assertIsNone(re.search(harness.GATEWAY_READY,
                                    "not yet\nlistening on http://127.0.0.1:1", re.M))

    def test_died_before_ready(self):
        with self.assertRaises(harness.ProcError) as cm:
            harness.Proc(py_child("import sys; sys.stderr.write('bad flag\\n'); sys.exit(2)"),
                         name="dies", ready=r"\bready\b", expect_exit=None)
        self.assertIn("bad flag", str(cm.exception))
        self.assertIn("status 2", str(cm.exception))

    def test_ready_timeout(self):
        t0 = time.monotonic()
        with self.assertRaises(TimeoutError):
            harness.Proc(py_child("import time; time.sleep(30)"), name="silent", timeout=0.5)
        self.assertLess(time.monotonic() - t0, 5)

    def test_wait_for_since(self):
        p = harness.Proc(py_child("""
            import sys, time
            print("one ready", file=sys.stderr, flush=True)
            time.sleep(0.3)
            print("two", file=sys.stderr, flush=True)
            time.sleep(60)
            """), name="lines")
        mark = p.log_size()
        self.assertEqual(p.wait_for(r"two", 10, since=mark).group(0), "two")

    def test_exit_check_passes_on_clean_exit(self):
        p = harness.Proc(py_child("""
            import signal, sys, time
            signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
            print("ready", file=sys.stderr, flush=True)
            time.sleep(60)
            """), name="clean", expect_exit=0, sanitizer_check=True)
        self.assertEqual(p.stop(check=True), 0)

    def test_exit_check_catches_bad_status(self):
        p = harness.Proc(py_child("""
            import sys, time
            print("ready", file=sys.stderr, flush=True)
            time.sleep(60)
            """), name="no-handler", expect_exit=0)
        with self.assertRaisesRegex(AssertionError, "exit status -15, expected 0"):
            p.stop(check=True)

    def test_exit_check_catches_hang_on_sigterm(self):
        p = harness.Proc(py_child("""
            import signal, sys, time
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print("ready", file=sys.stderr, flush=True)
            time.sleep(60)
            """), name="ignores-term", expect_exit=0)
        with self.assertRaisesRegex(AssertionError, "did not exit within"):
            p.stop(grace=0.5, check=True)

    def test_exit_check_catches_sanitizer_report(self):
        p = harness.Proc(py_child("""
            import signal, sys, time
            signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
            print("ready", file=sys.stderr, flush=True)
            print("==1==ERROR: LeakSanitizer: detected memory leaks", file=sys.stderr, flush=True)
            time.sleep(60)
            """), name="leaky", expect_exit=0, sanitizer_check=True)
        with self.assertRaisesRegex(AssertionError, "sanitizer report"):
            p.stop(check=True)

    def test_kill_takes_over_status(self):
        p = harness.Proc(py_child("import time; print('ready', flush=True, file=__import__('sys').stderr); time.sleep(60)"),
                         name="killed", expect_exit=0)
        self.assertEqual(p.kill(), -signal.SIGKILL)
        self.assertIsNone(p.expect_exit)

    def test_per_test_timeout(self):
        class Inner(harness.E2ETestCase):
            @harness.timeout(0.5)
            def test_hangs(self):
                time.sleep(10)

        result = unittest.TestResult()
        t0 = time.monotonic()
        Inner("test_hangs").run(result)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(len(result.errors), 1, result.errors)
        self.assertIn("TestTimeout", result.errors[0][1])


_class_scope_pids: list[int] = []


class ClassScopeTest(harness.E2ETestCase):
    """Processes started in setUpClass live for the whole class."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.nats = harness.Nats()
        cls.child = harness.Proc(py_child("""
            import signal, sys, time
            signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
            print("ready", file=sys.stderr, flush=True)
            time.sleep(120)
            """), name="class-child", expect_exit=0, sanitizer_check=True)
        _class_scope_pids[:] = [cls.nats.pid, cls.child.pid]

    def test_a_shared(self):
        self.assertTrue(self.child.alive())
        self.assertIsInstance(self.nats.subsz(), int)

    def test_b_still_shared(self):
        self.assertEqual([self.nats.pid, self.child.pid], _class_scope_pids)
        self.assertTrue(self.child.alive() and self.nats.proc.alive())


class ClassScopeZAfterTest(unittest.TestCase):
    """Runs after ClassScopeTest (unittest sorts classes by name)."""

    def test_class_processes_stopped(self):
        if not _class_scope_pids:
            self.skipTest("ClassScopeTest did not run")
        for pid in _class_scope_pids:
            self.assertFalse(os.path.exists(f"/proc/{pid}"), f"pid {pid} still exists")


class CleanupTest(harness.E2ETestCase):
    """A harness-using process that dies must not leave children behind."""
    timeout = 60

    SCRIPT = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(HERE)!r})
        import harness
        p = harness.Proc([sys.executable, "-c", "import sys, time; print('ready', file=sys.stderr, flush=True); time.sleep(120)"], name="child")
        n = harness.Nats()
        print(p.pid, n.pid, harness.session_dir(), flush=True)
        time.sleep(120)
        """)

    def _run_and_signal(self, sig):
        driver = subprocess.Popen([sys.executable, "-c", self.SCRIPT], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        try:
            line = driver.stdout.readline().split()
            self.assertEqual(len(line), 3, driver.stderr.read() if driver.poll() else line)
            pids, tmp = [int(x) for x in line[:2]], pathlib.Path(line[2])
            for pid in pids:
                os.kill(pid, 0)   # alive
            driver.send_signal(sig)
            driver.wait(20)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
            driver.stdout.close()
            driver.stderr.close()

        def gone(pid):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    return f.read().split(") ")[1].split()[0] == "Z"
            except FileNotFoundError:
                return True
        harness.wait_until(lambda: all(gone(p) for p in pids), 10, 0.05, "children gone")
        return tmp

    def test_sigterm_cleans_up(self):
        tmp = self._run_and_signal(signal.SIGTERM)
        self.assertFalse(tmp.exists(), f"{tmp} left behind")

    def test_sigkill_still_kills_children(self):
        tmp = self._run_and_signal(signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)   # nobody could remove it


class HttpHelpersTest(harness.E2ETestCase):
    timeout = 60

    def test_upstream_curl_raw_http(self):
        d = self.tmpdir("docroot")
        digest = harness.make_random_file(d / "blob.bin", 300_000, seed=7)
        (d / "small.txt").write_text("hello\n")
        up = harness.HttpUpstream(d)

        rc, body, err = harness.curl("-f", f"{up.base}/blob.bin")
        self.assertEqual(rc, 0, err)
        self.assertEqual(harness.sha256_bytes(body), digest)

        data = harness.raw_http(up.port, b"GET /small.txt HTTP/1.1\r\nHost: x\r\n"
                                         b"Connection: close\r\n\r\n")
        resp, rest = harness.parse_http_response(data)
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.body, b"hello\n")
        self.assertEqual(resp.header("content-length"), "6")
        self.assertTrue(resp.complete)
        self.assertEqual(rest, b"")

        data, how = harness.raw_http(up.port, [b"GET /small.txt HTTP/1.0\r\n", b"\r\n"],
                                     pause=0.1, detail=True)
        self.assertEqual(how, "closed")
        self.assertTrue(data.startswith(b"HTTP/1.0 200"))

    def test_curl_refused_port(self):
        rc, _, err = harness.curl(f"http://127.0.0.1:{harness.unused_port()}/", max_time=5)
        self.assertEqual(rc, 7, err)   # couldn't connect

    @unittest.skipUnless(os.path.exists(harness.NGINX), "nginx not installed")
    def test_nginx(self):
        d = self.tmpdir("nginx-root")
        (d / "index.html").write_text("<p>hi</p>\n")
        ng = harness.Nginx(d, server_conf="location = /teapot { return 418; }")
        rc, body, err = harness.curl("-f", f"{ng.base}/index.html")
        self.assertEqual((rc, body), (0, b"<p>hi</p>\n"), err)
        data = harness.raw_http(ng.port, b"HEAD /index.html HTTP/1.1\r\nHost: x\r\n\r\n"
                                         b"GET /teapot HTTP/1.1\r\nHost: x\r\n"
                                         b"Connection: close\r\n\r\n")
        head, teapot = harness.parse_http_responses(data, ["HEAD", "GET"])
        self.assertEqual((head.status, head.header("Content-Length"), head.body),
                         (200, "10", b""))
        self.assertEqual(teapot.status, 418)


class ParseTest(unittest.TestCase):
    def test_keepalive_stream(self):
        stream = (b"HTTP/1.1 100 Continue\r\n\r\n"
                  b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
                  b"HTTP/1.1 200 OK\r\nContent-Length: 1192\r\n\r\n"            # HEAD
                  b"HTTP/1.1 204 No Content\r\n\r\n"
                  b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: abc\r\n\r\n"
                  b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"3\r\nabc\r\n0\r\n\r\n"
                  b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\ncut")
        rs = harness.parse_http_responses(stream, ["PUT", "HEAD", "DELETE", "GET", "GET", "GET"])
        self.assertEqual([r.status for r in rs], [100, 201, 200, 204, 200, 200, 200])
        self.assertEqual(rs[1].body, b"ok")
        self.assertEqual((rs[2].body, rs[2].header("content-length")), (b"", "1192"))
        self.assertEqual(rs[4].body, b"hello world")
        self.assertEqual(rs[4].trailers, [("X-Sum", "abc")])
        self.assertEqual(rs[5].body, b"abc")
        self.assertTrue(all(r.complete for r in rs[:6]))
        self.assertEqual((rs[6].body, rs[6].complete), (b"cut", False))

    def test_cut_chunked_body(self):
        r, rest = harness.parse_http_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n10\r\nshort")
        self.assertFalse(r.complete)
        self.assertEqual(r.body, b"helloshort")
        self.assertEqual(rest, b"")

    def test_close_delimited(self):
        r, rest = harness.parse_http_response(b"HTTP/1.0 200 OK\r\n\r\nall of it")
        self.assertEqual((r.body, rest), (b"all of it", b""))

    def test_incomplete_head(self):
        with self.assertRaises(ValueError):
            harness.parse_http_response(b"HTTP/1.1 200 OK\r\nContent-")


class FileHelpersTest(harness.E2ETestCase):
    def test_random_file_is_deterministic(self):
        d = self.tmpdir("files")
        a = harness.make_random_file(d / "a", 3 * (1 << 20) + 5, seed=1)
        b = harness.make_random_file(d / "b", 3 * (1 << 20) + 5, seed=1)
        c = harness.make_random_file(d / "c", 3 * (1 << 20) + 5, seed=2)
        self.assertEqual(a, b)
        self.assertNotEqual(a, c)
        self.assertEqual(harness.sha256_file(d / "a"), a)
        self.assertEqual((d / "a").stat().st_size, 3 * (1 << 20) + 5)

    def test_assert_bytes_equal_message(self):
        with self.assertRaisesRegex(AssertionError, r"len 4 vs 4.*offset 2"):
            self.assertBytesEqual(b"abcd", b"abXd")


if __name__ == "__main__":
    harness.main()
