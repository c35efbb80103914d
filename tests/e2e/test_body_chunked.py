"""BR-05: chunked request bodies through the gateway: chunk extensions and
trailers are framing, not data; a 20 MB chunked body spans many NATS
messages and arrives byte-identical; a malformed chunk size is a 400 that
never reaches the NATS side.

    raw socket -> nats-http gateway -> nats-server -> echo_responder
"""

import random

import harness
import peers

BR05_BODY = (b"2;note=x\r\nhi\r\n5\r\nthere\r\n3\r\nbye\r\n0\r\nX-Checksum: abc\r\n\r\n")


class ChunkedBodyTest(harness.E2ETestCase):
    timeout = 60
    gateway_args: tuple = ()     # default: v2 with peers that speak it

    def setUp(self):
        self.nats, self.echo, self.gw = peers.echo_stack("subj", *self.gateway_args)
        self.listen = peers.natsraw_listen(self.nats, "subj.>", ms=50000)

    def post(self, path: str, body: bytes, extra: bytes = b""):
        req = (f"POST {path} HTTP/1.1\r\nHost: gw.example\r\nContent-Type: text/plain\r\n"
               .encode() + extra + b"Transfer-Encoding: chunked\r\n\r\n" + body)
        return peers.exchange(self.gw.port, req, "POST", timeout=60)

    def test_BR05_chunk_extension_and_trailer(self):
        resp, extra = self.post("/echo", BR05_BODY)
        self.assertEqual(resp.status, 200)
        self.assertEqual(extra, b"")
        echoed = peers.echo_json(resp.body)
        self.assertEqual(echoed["length"], 10)
        self.assertEqual(echoed["sha256"], harness.sha256_bytes(b"hitherebye"))
        self.assertEqual(echoed["complete"], True)
        # Re-framed by the gateway: never both framings, and the trailer is
        # not turned into a header.
        self.assertEqual(peers.headers_named(echoed, "Transfer-Encoding"), [])
        self.assertIn(peers.headers_named(echoed, "Content-Length"), ([], ["10"]))
        self.assertEqual(sorted(h for h in echoed["headers"] if h[0] != "Content-Length"),
                         [["Content-Type", "text/plain"], ["Host", "gw.example"]])
        first = peers.wait_listened(self.listen, lambda m: m.subject == "subj.POST.echo")
        self.assertEqual(len(first), 1)
        self.assertFalse(first[0].header_all("Content-Length")
                         and first[0].header_all("Transfer-Encoding"), first[0])

    def test_BR05_keep_alive_after_trailer(self):
        # The trailer section ends the request: the next one on the connection
        # is parsed from the right place.
        import socket
        with socket.create_connection(("127.0.0.1", self.gw.port), timeout=10) as s:
            s.sendall(b"POST /one HTTP/1.1\r\nHost: gw.example\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n" + BR05_BODY
                      + b"POST /two HTTP/1.1\r\nHost: gw.example\r\nContent-Length: 3\r\n\r\nabc")
            _i, r1, rest = peers.read_response(s, "POST")
            _i, r2, rest = peers.read_response(s, "POST", buf=bytearray(rest))
        e1, e2 = peers.echo_json(r1.body), peers.echo_json(r2.body)
        self.assertEqual((e1["path"], e1["length"], e1["sha256"]),
                         ("/one", 10, harness.sha256_bytes(b"hitherebye")))
        self.assertEqual((e2["path"], e2["length"], e2["sha256"]),
                         ("/two", 3, harness.sha256_bytes(b"abc")))

    def test_BR05_20MB_chunked_intact(self):
        size = 20 * 1000 * 1000
        rng = random.Random(205)
        body = rng.randbytes(size)
        # Chunks of varying size, some with extensions, upper- and lower-case hex.
        parts, pos, i = [], 0, 0
        while pos < size:
            n = min(rng.choice((1, 7, 4096, 65536, 300001, 1048576, 2000000)), size - pos)
            ext = b";i=%d" % i if i % 3 == 0 else b""
            size_hex = (b"%X" if i % 2 else b"%x") % n
            parts.append(size_hex + ext + b"\r\n" + body[pos:pos + n] + b"\r\n")
            pos += n
            i += 1
        wire = b"".join(parts) + b"0\r\nX-Sum: 1\r\n\r\n"
        resp, extra = self.post("/big", wire)
        self.assertEqual(resp.status, 200)
        echoed = peers.echo_json(resp.body)
        self.assertEqual(echoed["length"], size)
        self.assertEqual(echoed["sha256"], harness.sha256_bytes(body))
        self.assertEqual(echoed["complete"], True)
        self.assertEqual(resp.header("X-Body-Length"), str(size))

    def test_BR05_malformed_chunk_size_is_400(self):
        resp, extra = self.post("/bad", b"zz\r\nhi\r\n0\r\n\r\n")
        self.assertEqual(resp.status, 400)
        self.assertEqual(resp.header("Connection"), "close")
        self.assertEqual(extra, b"")
        # Nothing reached the NATS side: the marker request is the only message.
        resp, _ = peers.exchange(self.gw.port, b"GET /marker HTTP/1.1\r\nHost: x\r\n"
                                 b"Connection: close\r\n\r\n")
        self.assertEqual(resp.status, 200)
        msgs = peers.wait_listened(self.listen, lambda m: m.subject == "subj.GET.marker")
        self.assertEqual([m.subject for m in msgs], ["subj.GET.marker"])


class ChunkedBodyTestV1(ChunkedBodyTest):
    """The same with the gateway speaking protocol v1 only."""
    gateway_args = ("--protocol", "1")


if __name__ == "__main__":
    harness.main()
