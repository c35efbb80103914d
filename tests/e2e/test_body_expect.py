"""BR-04: `Expect: 100-continue` uploads. The gateway answers 100 Continue at
once, then streams the body; a request the NATS side refuses (serve --dir
takes no PUT) gets its real status, never a reset or a hang, whether the
client waited for the 100 or not.

    raw socket -> nats-http gateway -> nats-server -> echo_responder | nats-http serve --dir
"""

import random
import socket

import harness
import peers

SIZE = 2 * 1024 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def put_head(length: int | None, keep_alive: bool = False) -> bytes:
    framing = (f"Content-Length: {length}\r\n" if length is not None
               else "Transfer-Encoding: chunked\r\n")
    return (b"PUT /upload/blob HTTP/1.1\r\nHost: gw.example\r\n"
            b"Content-Type: application/octet-stream\r\n" + framing.encode()
            + b"Expect: 100-continue\r\n" + (b"" if keep_alive else b"Connection: close\r\n")
            + b"\r\n")


class ExpectContinueTest(harness.E2ETestCase):
    timeout = 30
    gateway_args: tuple = ()     # default: v2 with peers that speak it

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.body = random.Random(4).randbytes(SIZE)
        cls.sha = harness.sha256_bytes(cls.body)

    def upload_after_continue(self, port: int, head: bytes, body: bytes):
        """Send the head, wait for 100 Continue (timed), then the body: the final response."""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(head)
            interim, took, rest = peers.read_head(s, timeout=5)
            self.assertEqual(interim, CONTINUE)
            self.assertLess(took, 0.5, "100 Continue must come well under curl's 1 s wait")
            self.assertEqual(rest, b"")
            s.sendall(body)
            more, resp, after = peers.read_response(s, "PUT", timeout=20)
        self.assertEqual(more, [])
        self.assertEqual(after, b"")
        return resp

    def test_BR04_expect_continue_content_length(self):
        nats, echo, gw = peers.echo_stack("subj", *self.gateway_args)
        resp = self.upload_after_continue(gw.port, put_head(SIZE), self.body)
        self.assertEqual(resp.status, 200)
        echoed = peers.echo_json(resp.body)
        self.assertEqual(echoed["method"], "PUT")
        self.assertEqual(echoed["length"], SIZE)
        self.assertEqual(echoed["sha256"], self.sha)
        self.assertEqual(echoed["complete"], True)
        self.assertEqual(peers.headers_named(echoed, "Expect"), [])

    def test_BR04_expect_continue_chunked(self):
        nats, echo, gw = peers.echo_stack("subj", *self.gateway_args)
        resp = self.upload_after_continue(gw.port, put_head(None),
                                          peers.chunked(self.body, 65536))
        self.assertEqual(resp.status, 200)
        echoed = peers.echo_json(resp.body)
        self.assertEqual(echoed["length"], SIZE)
        self.assertEqual(echoed["sha256"], self.sha)
        self.assertEqual(echoed["complete"], True)
        self.assertEqual(peers.headers_named(echoed, "Expect"), [])
        self.assertEqual(peers.headers_named(echoed, "Content-Length"), [])

    def test_BR04_curl_upload_no_extra_second(self):
        # curl sends Expect: 100-continue for a 2 MiB PUT and waits up to 1 s.
        nats, echo, gw = peers.echo_stack("subj", *self.gateway_args)
        f = harness.tmpdir("up") / "f.bin"
        f.write_bytes(self.body)
        out = harness.tmpdir("out") / "body"
        rc, written, err = harness.curl("-o", out, "-w", "%{http_code} %{time_total}", "-T", f,
                                        gw.base + "/upload/blob")
        self.assertEqual(rc, 0, err)
        code, took = written.split()
        self.assertEqual(code, b"200")
        self.assertLess(float(took), 0.9, "curl must not wait out its 1 s Expect timeout")
        echoed = peers.echo_json(out.read_bytes())
        self.assertEqual(echoed["sha256"], self.sha)
        self.assertEqual(echoed["complete"], True)


class ExpectContinueTestV1(ExpectContinueTest):
    """The same with the gateway speaking protocol v1 only."""
    gateway_args = ("--protocol", "1")


class ExpectRefusedTest(harness.E2ETestCase):
    """Variant B: serve --dir refuses PUT with 405."""
    timeout = 30
    gateway_args: tuple = ()

    def setUp(self):
        self.nats = harness.Nats()
        site = harness.tmpdir("site")
        (site / "hello.txt").write_bytes(b"hello\n")
        self.serve = harness.serve(self.nats, "files", site)
        self.gw = harness.gateway(self.nats, "files", *self.gateway_args)
        self.body = random.Random(5).randbytes(SIZE)

    def assert_405(self, resp):
        self.assertEqual(resp.status, 405)
        self.assertEqual(resp.header("Allow"), "GET, HEAD")
        self.assertEqual(resp.body, b"405 Method Not Allowed\n")

    def refused(self, head: bytes, body: bytes, wait: bool, keep_alive: bool):
        with socket.create_connection(("127.0.0.1", self.gw.port), timeout=10) as s:
            s.sendall(head)
            if wait:
                interim, took, rest = peers.read_head(s, timeout=5)
                if interim.startswith(b"HTTP/1.1 100 "):
                    self.assertEqual(interim, CONTINUE)
                    self.assertLess(took, 0.5)
                    buf = rest
                else:
                    buf = interim + rest         # the final status, straight away
            else:
                buf = b""
            try:
                s.sendall(body)
            except (BrokenPipeError, ConnectionResetError):
                pass                             # closed after answering: fine
            interim, resp, after = peers.read_response(s, "PUT", timeout=10,
                                                       buf=bytearray(buf))
            self.assertEqual([r.status for r in interim], [100] * len(interim))
            self.assert_405(resp)
            self.assertEqual(after, b"")
            if keep_alive and (resp.header("Connection") or "").lower() != "close":
                # The body was read and dropped: the connection still works.
                s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: gw.example\r\n\r\n")
                _i, nxt, _a = peers.read_response(s, timeout=10)
                self.assertEqual(nxt.status, 200)
                self.assertEqual(nxt.body, b"hello\n")
        return resp

    def test_BR04_refused_content_length_after_continue(self):
        self.refused(put_head(SIZE), self.body, wait=True, keep_alive=False)

    def test_BR04_refused_content_length_without_waiting(self):
        self.refused(put_head(SIZE), self.body, wait=False, keep_alive=False)

    def test_BR04_refused_keep_alive_after_continue(self):
        self.refused(put_head(SIZE, keep_alive=True), self.body, wait=True, keep_alive=True)

    def test_BR04_refused_keep_alive_without_waiting(self):
        self.refused(put_head(SIZE, keep_alive=True), self.body, wait=False, keep_alive=True)

    def test_BR04_refused_chunked_after_continue(self):
        self.refused(put_head(None), peers.chunked(self.body), wait=True, keep_alive=False)

    def test_BR04_refused_chunked_without_waiting(self):
        self.refused(put_head(None, keep_alive=True), peers.chunked(self.body), wait=False,
                     keep_alive=True)

    def test_BR04_refused_log(self):
        # One 405 per attempt on the serve side.
        since = self.serve.log_size()
        for wait in (True, False):
            self.refused(put_head(SIZE), self.body, wait=wait, keep_alive=False)
        log = self.serve.log_text().encode()[since:].decode()
        self.assertEqual(log.count("PUT /upload/blob -> 405"), 2, log)


class ExpectRefusedTestV1(ExpectRefusedTest):
    """The same with the gateway speaking protocol v1 only."""
    gateway_args = ("--protocol", "1")


class ExpectNoRespondersTest(harness.E2ETestCase):
    timeout = 30

    def test_BR04_no_responders_real_status(self):
        nats = harness.Nats()
        gw = harness.gateway(nats, "nobody")
        body = b"x" * SIZE
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
            s.sendall(put_head(SIZE))
            head, took, rest = peers.read_head(s, timeout=5)
            buf = rest if head == CONTINUE else head + rest
            try:
                s.sendall(body)
            except (BrokenPipeError, ConnectionResetError):
                pass
            interim, resp, after = peers.read_response(s, "PUT", timeout=10,
                                                       buf=bytearray(buf))
        self.assertEqual(resp.status, 503)
        self.assertEqual(resp.header("Retry-After"), "1")
        self.assertEqual(after, b"")


if __name__ == "__main__":
    harness.main()
