"""Upstream failures through gateway -> NATS -> serve --upstream: each is
distinct at the HTTP client, never a complete-looking response, and one log
line of component "upstream" at serve. Cases BR-19, BR-20, BR-26 (a)(b)."""

import socket
import threading
import time

import harness
from test_upstream_common import (Conn, Upstream, UpstreamStack, build_request, curl_full,
                                  raw_request, upstream_lines)


def one_line(test, serve, since, *needles, timeout=5.0):
    """Waits for, then returns, the single "upstream" log line since `since`."""
    harness.wait_until(lambda: upstream_lines(serve, since), timeout, 0.05, "an upstream log line")
    time.sleep(0.3)   # a second line would be a bug: give it the chance to show
    lines = upstream_lines(serve, since)
    test.assertEqual(len(lines), 1, lines)
    for n in needles:
        test.assertIn(n, lines[0])
    return lines[0]


class DownTest(harness.E2ETestCase):
    timeout = 40

    def test_BR26_b_upstream_port_closed_502(self):
        st = UpstreamStack(url=f"http://127.0.0.1:{harness.unused_port()}")
        since = st.serve.log_size()
        t0 = time.monotonic()
        rc, resp, body, err = curl_full(st.base + "/x.narinfo")
        self.assertEqual(rc, 0, err)
        self.assertEqual(resp.status, 502)
        self.assertIn(b"upstream", body)
        self.assertLess(time.monotonic() - t0, 5)
        line = one_line(self, st.serve, since, "GET /x.narinfo")
        self.assertRegex(line.lower(), r"connect|refused")
        # and again: nothing stays broken
        rc, resp, body, err = curl_full(st.base + "/y")
        self.assertEqual(resp.status, 502)


class TimeoutTest(harness.E2ETestCase):
    timeout = 60

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.st = UpstreamStack(serve_args=["--upstream-timeout", "2"])

    def test_BR26_a_never_answers_504(self):
        since = self.st.serve.log_size()
        t0 = time.monotonic()
        rc, resp, body, err = curl_full(self.st.base + "/up/never")
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, err)
        self.assertEqual(resp.status, 504, body)
        self.assertGreater(took, 1.8)
        self.assertLess(took, 4.5)
        one_line(self, self.st.serve, since, "GET /up/never", "504")

    def test_slow_head_within_the_timeout_is_fine(self):
        rc, resp, body, err = curl_full(self.st.base + "/up/slow-head?delay=1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(resp.status, 200)
        self.assertEqual(body, b"late\n")

    def test_slow_upload_is_not_a_head_timeout(self):
        # the client takes 3 s over its body: the upstream owes nothing meanwhile
        body = b"q" * 30000
        parts = [build_request("POST", "/up/sink", [("Connection", "close"),
                                                    ("Content-Length", str(len(body)))])
                 + body[:10000]] + [body[i:i + 10000] for i in range(10000, 30000, 10000)]
        data = harness.raw_http(self.st.port, parts, pause=1.5, read_timeout=15)
        resp, _ = harness.parse_http_response(data)
        self.assertEqual(resp.status, 200, resp)
        self.assertIn(b'"length": 30000', resp.body)


class BrokenTest(harness.E2ETestCase):
    timeout = 60

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.st = UpstreamStack()

    def test_reset_before_response_502(self):
        since = self.st.serve.log_size()
        resp = raw_request(self.st.port, "GET", "/up/reset")
        self.assertEqual(resp.status, 502)
        one_line(self, self.st.serve, since, "GET /up/reset")

    def test_BR19_dies_before_any_body_byte_502(self):
        since = self.st.serve.log_size()
        resp = raw_request(self.st.port, "GET", "/up/die-before-body?cl=5000000")
        self.assertEqual(resp.status, 502, resp)
        one_line(self, self.st.serve, since, "GET /up/die-before-body", "before the body")

    def test_BR19_content_length_one_message_never_complete(self):
        # 1,000,000 bytes fit one NATS message: the server gathers them, so nothing
        # reached the client when the upstream broke: 502 (or a cut-off body)
        since = self.st.serve.log_size()
        rc, resp, body, err = curl_full(self.st.base + "/up/close-mid?cl=1000000&send=300000")
        self.assertTrue((rc == 0 and resp.status == 502) or rc == 18, (rc, resp, err))
        one_line(self, self.st.serve, since, "GET /up/close-mid")

    def test_BR19_content_length_streamed_cut_off_curl_18(self):
        since = self.st.serve.log_size()
        t0 = time.monotonic()
        rc, resp, body, err = curl_full(self.st.base + "/up/close-mid?cl=4000000&send=1500000")
        self.assertEqual(rc, 18, (rc, err, resp))
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header_all("Content-Length"), ["4000000"])
        self.assertLess(len(body), 4000000)
        self.assertLess(time.monotonic() - t0, 10)
        line = one_line(self, self.st.serve, since, "GET /up/close-mid", "broke off")
        self.assertIn("body bytes", line)

    def test_BR19_chunked_cut_off_no_final_chunk(self):
        since = self.st.serve.log_size()
        with Conn(self.st.port) as c:
            c.send(build_request("GET", "/up/close-mid-chunked?n=3"))
            data, how = c.read_until_close(timeout=15)
        resp, _ = harness.parse_http_response(data)
        self.assertEqual(resp.status, 200)
        self.assertFalse(resp.complete, f"a cut-off chunked body looked complete: {data[-50:]!r}")
        self.assertEqual(resp.body, b"y" * len(resp.body))
        self.assertNotEqual(how, "timeout")
        one_line(self, self.st.serve, since, "GET /up/close-mid-chunked")
        rc, _, _, err = curl_full(self.st.base + "/up/close-mid-chunked?n=3")
        self.assertEqual(rc, 18, err)

    def test_BR19_v1_peers_still_see_the_cut(self):
        # exactly v1 on both sides: no abort marker, the gateway's --timeout shows it
        nats = harness.Nats()
        st = UpstreamStack(nats=nats, upstream=self.st.upstream, serve_args=["--protocol", "1"],
                           gateway_args=["--protocol", "1", "--idle-timeout", "3"])
        rc, resp, body, err = curl_full(st.base + "/up/close-mid?cl=4000000&send=1500000")
        self.assertEqual(rc, 18, err)
        self.assertLess(len(body), 4000000)
        rc, _, _, err = curl_full(st.base + "/up/close-mid-chunked?n=3")
        self.assertIn(rc, (18, 56), err)

    def test_BR19_serve_killed_mid_stream(self):
        nats = harness.Nats()
        st = UpstreamStack(nats=nats, upstream=self.st.upstream,
                           gateway_args=["--idle-timeout", "3", "--timeout", "3"])
        result = {}

        def fetch():
            result["r"] = curl_full(st.base + "/up/chunked?n=100&size=10000&pause=0.1")

        t = threading.Thread(target=fetch)
        t.start()
        time.sleep(1.5)
        st.serve.kill()
        t.join(20)
        rc, resp, body, err = result["r"]
        self.assertIn(rc, (18, 56), err)
        self.assertLess(len(body), 100 * 10000)


class ClientLeavesTest(harness.E2ETestCase):
    """BR-20: once the HTTP client is gone, serve stops the upstream request."""
    timeout = 60

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.st = UpstreamStack(serve_args=["--upstream-timeout", "30"])

    def upstream_idle(self, timeout=8, upstream=None):
        up = upstream or self.st.upstream
        harness.wait_until(lambda: up.stats()["active"] == 0, timeout, 0.1,
                           "upstream with no request in progress")

    def test_BR20_client_closes_mid_download(self):
        with Conn(self.st.port) as c:
            c.send(build_request("GET", "/up/forever?id=dl"))
            got = 0
            while got < 1_000_000:
                got += len(c.sock.recv(65536))
        t_closed = time.time()
        st = harness.wait_until(lambda: (self.st.upstream.stats("dl")["stream"] or {})
                                .get("ended") and self.st.upstream.stats("dl")["stream"], 10, 0.1,
                                "the upstream stream to end")
        self.assertLess(st["ended_at"] - t_closed, 5, st)
        self.upstream_idle()
        # nothing is stuck: the next request works
        self.assertEqual(raw_request(self.st.port, "GET", "/after").status, 200)

    def test_BR20_client_closes_while_upstream_owes_the_head(self):
        st = UpstreamStack(nats=harness.Nats(), serve_args=["--upstream-timeout", "30"])
        since = st.gw.log_size()
        with Conn(st.port) as c:
            c.send(build_request("GET", "/up/slow-head?delay=20"))
            time.sleep(1)
        # The gateway's watch notices the closed socket although the connection
        # is suspended, and cancels; the server, which announced its control
        # subject for this slow answer, drops the upstream request.
        st.gw.wait_for(r"slow-head\?delay=20: the client left before the response; cancelled", 3,
                       since=since)
        t0 = time.monotonic()
        self.upstream_idle(10, st.upstream)
        self.assertLess(time.monotonic() - t0, 5)

    def test_BR20_gateway_gives_up_while_upstream_owes_the_head(self):
        # The gateway's own --timeout cancels the call: serve must drop the upstream
        # request. (A chunked body, so that the client knows where to send the cancel
        # before any response head: for a bodiless request v2 learns it only from the head.)
        st = UpstreamStack(nats=harness.Nats(), serve_args=["--upstream-timeout", "30"],
                           gateway_args=["--timeout", "2"])
        since = st.serve.log_size()
        rc, resp, body, err = curl_full(st.base + "/up/slow-head?delay=20", "-X", "POST",
                                        "-H", "Transfer-Encoding: chunked", "--data-binary", "x")
        self.assertEqual((rc, resp.status), (0, 504), err)
        t0 = time.monotonic()
        self.upstream_idle(10, st.upstream)
        self.assertLess(time.monotonic() - t0, 3)
        line = one_line(self, st.serve, since, "POST /up/slow-head")
        self.assertIn("went away", line)

    def test_BR20_client_closes_during_a_slow_upload(self):
        c = Conn(self.st.port)
        c.send(build_request("POST", "/up/sink", [("Content-Length", "10000000")]))
        for _ in range(3):
            c.send(b"u" * 20000)
            time.sleep(0.3)
        harness.wait_until(lambda: self.st.upstream.stats()["active"] == 1, 5, 0.05,
                           "the upload to reach the upstream")
        c.close()
        t0 = time.monotonic()
        self.upstream_idle(10)
        self.assertLess(time.monotonic() - t0, 8)


class ShutdownTest(harness.E2ETestCase):
    timeout = 60

    def test_sigterm_with_requests_in_flight(self):
        # --grace 1: what is still under way after a second is aborted
        # (the drain itself is tested in test_cluster_drain.py).
        st = UpstreamStack(serve_args=("--grace", "1"))
        results = {}

        def fetch(name, path):
            results[name] = curl_full(st.base + path, max_time=20)

        threads = [threading.Thread(target=fetch, args=("never", "/up/never")),
                   threading.Thread(target=fetch, args=("stream",
                                                        "/up/chunked?n=200&size=1000&pause=0.05")),
                   threading.Thread(target=fetch, args=("upload", "/up/never"))]
        for t in threads:
            t.start()
        harness.wait_until(lambda: st.upstream.stats()["active"] >= 3, 5, 0.05, "3 in flight")
        t0 = time.monotonic()
        st.serve.stop(check=True)   # exit 0 within the grace time, no sanitizer report
        self.assertLess(time.monotonic() - t0, 4)
        for t in threads:
            t.join(25)
        rc, resp, _, err = results["never"]
        self.assertEqual((rc, resp.status if resp else None), (0, 502), err)
        rc, resp, body, err = results["stream"]
        self.assertIn(rc, (18, 56), (rc, err, len(body)))


if __name__ == "__main__":
    harness.main()
