"""Hostile URLs and the gateway's limits (issue 5, BR-23).

    curl / raw socket -> gateway -> nats-server -> echo_responder
                                         \\-> natsraw listen '>'

- Protocol injection: a path with a percent-encoded CR LF and NATS protocol
  text publishes nothing but (at most) its one request: nobody sees `evil.x`,
  and the gateway's NATS connection (same cid) keeps serving.
- BR-23: a URL too long for a subject is a 414 (never a dropped NATS
  connection); 2000 segments and a 64 KiB target likewise get an answer.
- --max-body: Content-Length over it is 413 before the body (no 100
  Continue); a chunked body passing it is cut off with 413.
- --max-inflight: the request over it gets 503 with Retry-After at once.
- --http-head-timeout (slowloris): a head trickled one byte at a time is cut
  off at the deadline, although every byte restarts libmicrohttpd's idle
  timer; a client that sends its requests whole keeps its connection.
"""

import socket
import time

import harness
import peers
from peers import Conn, raw_request


class InjectionTest(harness.E2ETestCase):
    timeout = 60

    def setUp(self):
        self.nats, self.echo, self.gw = peers.echo_stack("subj")
        self.listen = peers.natsraw_listen(self.nats, ">", ms=20000)
        self.conns = self.nats.connz()["num_connections"]
        self.cids = sorted(c["cid"] for c in self.nats.connz()["connections"])

    def assert_connections_unchanged(self):
        self.assertEqual(sorted(c["cid"] for c in self.nats.connz()["connections"]), self.cids)

    def marker(self):
        r = raw_request(self.gw.port, "GET", "/marker")
        self.assertEqual(r.status, 200, r)
        return peers.wait_listened(self.listen, lambda m: m.subject == "subj.GET.marker")

    def test_crlf_protocol_text_in_the_path(self):
        for target in ("/%0D%0APUB%20evil.x%205%0D%0Ahello",
                       "/a%0d%0aPUB%20evil.x%205%0d%0ahello%0d%0a",
                       "/%0APUB%20evil.x%201%0Ax"):
            with self.subTest(target=target):
                r = raw_request(self.gw.port, "GET", target)
                self.assertEqual(r.status, 400, r)
                self.assertEqual(r.body, b"natshttp gateway: path cannot be carried over NATS\n")
        msgs = self.marker()
        self.assertEqual([m.subject for m in msgs if not m.subject.startswith("_INBOX")],
                         ["subj.GET.marker"])
        self.assertNotIn("evil.x", [m.subject for m in msgs])
        self.assert_connections_unchanged()

    def test_protocol_text_without_crlf_is_one_escaped_token(self):
        r = raw_request(self.gw.port, "GET", "/x%20PUB%20evil.x%205")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(peers.echo_json(r.body)["path"], "/x PUB evil.x 5")
        msgs = self.marker()
        self.assertEqual([m.subject for m in msgs if not m.subject.startswith("_INBOX")],
                         ["subj.GET.x%20PUB%20evil%2Ex%205", "subj.GET.marker"])
        self.assert_connections_unchanged()

    def test_BR23_long_url_414_and_the_connection_stays(self):
        with Conn(self.gw.port) as c:
            r = c.request("GET", "/a/" + "b" * 5000 + "/c?q=" + "d" * 10000)
            self.assertEqual(r.status, 414, r)
            self.assertEqual(r.body, b"natshttp gateway: URL too long for a NATS subject\n")
            # the same HTTP connection goes on
            r = c.request("GET", "/after")
            self.assertEqual(r.status, 200, r)
        # 2000 segments: the subject fits nats-server's control line, or it is a 414
        r = raw_request(self.gw.port, "GET", "/a" * 2000)
        self.assertIn(r.status, (200, 414), r)
        if r.status == 200:
            self.assertEqual(peers.echo_json(r.body)["path"], "/a" * 2000)
        r = raw_request(self.gw.port, "GET", "/" + "/".join(["ab"] * 2000))
        self.assertEqual(r.status, 414, r)
        # a 64 KiB request-target
        r = raw_request(self.gw.port, "GET", "/" + "x" * 65536)
        self.assertEqual(r.status, 414, r)
        self.marker()
        self.assert_connections_unchanged()
        self.assertTrue(self.gw.alive())


class MaxBodyTest(harness.E2ETestCase):
    timeout = 60
    LIMIT = 100000

    def setUp(self):
        self.nats, self.echo, self.gw = peers.echo_stack("subj", "--max-body", str(self.LIMIT))
        self.listen = peers.natsraw_listen(self.nats, "subj.>", ms=20000)

    def test_content_length_at_and_over_the_limit(self):
        body = b"b" * self.LIMIT
        r = raw_request(self.gw.port, "PUT", "/at", body=body)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(peers.echo_json(r.body)["length"], self.LIMIT)
        r = raw_request(self.gw.port, "PUT", "/over", body=body + b"!")
        self.assertEqual(r.status, 413, r)
        self.assertEqual(r.body, b"natshttp gateway: body too large\n")
        self.assertEqual(r.header("Connection"), "close")
        msgs = peers.wait_listened(self.listen, lambda m: m.subject == "subj.PUT.at")
        self.assertNotIn("subj.PUT.over", [m.subject for m in msgs])

    def test_expect_continue_over_the_limit_refused_before_the_body(self):
        with socket.create_connection(("127.0.0.1", self.gw.port), timeout=10) as s:
            s.sendall(f"PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: {self.LIMIT + 1}\r\n"
                      "Expect: 100-continue\r\n\r\n".encode())
            interim, resp, _ = peers.read_response(s, "PUT", 10)
            self.assertEqual(interim, [])
            self.assertEqual(resp.status, 413, resp)

    def test_chunked_over_the_limit_cut_off_with_413(self):
        req = (b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + peers.chunked(b"c" * (self.LIMIT * 3), 16384))
        data, how = harness.raw_http(self.gw.port, req, read_timeout=10, detail=True)
        resps, rest = peers.split_responses(peers.undouble_mhd_error(data), ["POST"])
        self.assertEqual([r.status for r in resps], [413], data[:500])
        self.assertEqual(resps[0].header("Connection"), "close")
        # within the limit, chunked works
        req = (b"POST /chunked-ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               b"Connection: close\r\n\r\n" + peers.chunked(b"c" * self.LIMIT, 16384))
        resp, _ = peers.exchange(self.gw.port, req, "POST", timeout=20)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(peers.echo_json(resp.body)["length"], self.LIMIT)


class MaxInflightTest(harness.E2ETestCase):
    timeout = 60

    def test_503_with_retry_after_over_the_limit(self):
        nats = harness.Nats()
        # a subscriber that never answers: requests stay in flight until --timeout
        silent = peers.natsraw_listen(nats, "subj.>", ms=60000)
        gw = harness.gateway(nats, "subj", "--max-inflight", "2", "--timeout", "4")
        held = [socket.create_connection(("127.0.0.1", gw.port), timeout=15) for _ in range(2)]
        for i, s in enumerate(held):
            s.sendall(f"GET /held/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        peers.wait_listened(silent, lambda m: m.subject == "subj.GET.held.1")
        r = raw_request(gw.port, "GET", "/third")
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.header("Retry-After"), "1")
        self.assertEqual(r.body, b"natshttp gateway: too many requests in flight\n")
        self.assertNotIn("subj.GET.third", [m.subject for m in peers.listened(silent)])
        # the held ones end (504 after the timeout) and free their places
        for s in held:
            _, resp, _ = peers.read_response(s, "GET", 15)
            self.assertEqual(resp.status, 504, resp)
            s.close()
        r = raw_request(gw.port, "GET", "/fourth")
        self.assertEqual(r.status, 504, r)


class HeadTimeoutTest(harness.E2ETestCase):
    timeout = 60

    def test_trickled_head_closed_at_the_deadline(self):
        nats, echo, gw = peers.echo_stack("subj", "--http-head-timeout", "2",
                                          "--http-idle-timeout", "60")
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        req = b"GET /slow HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 200
        t0 = time.monotonic()
        closed_after = None
        for i in range(len(req)):
            try:
                s.sendall(req[i:i + 1])
            except OSError:
                closed_after = time.monotonic() - t0
                break
            s.settimeout(0.25)
            try:
                if s.recv(1) == b"":
                    closed_after = time.monotonic() - t0
                    break
            except socket.timeout:
                pass
            except OSError:
                closed_after = time.monotonic() - t0
                break
        s.close()
        # one byte per 0.25 s would take 50 s to finish the head
        self.assertIsNotNone(closed_after, "the trickling connection was never closed")
        self.assertLess(closed_after, 20)
        gw.wait_for(r"closing the connection from 127\.0\.0\.1: no whole request head within 2 s",
                    timeout=5)
        # whole requests on one connection, each within the deadline, are fine
        with Conn(gw.port) as c:
            for i in range(3):
                r = c.request("GET", f"/fast/{i}")
                self.assertEqual(r.status, 200, r)
                time.sleep(1)
        self.assertTrue(gw.alive())


if __name__ == "__main__":
    harness.main()
