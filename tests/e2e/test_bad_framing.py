"""BR-07 and BR-08, request side: requests whose body framing is ambiguous
(Content-Length with Transfer-Encoding, differing or malformed
Content-Lengths, transfer codings other than a lone chunked) get one 400 or
501 with `Connection: close`, and nothing reaches the NATS side.

    raw socket -> nats-http gateway -> nats-server -> echo_responder
                                                   \\-> natsraw listen 'subj.>'
"""

import harness
import peers

SMUGGLED = b"GET / HTTP/1.1\r\nHost: gotcha\r\n\r\n"
assert len(SMUGGLED) == 0x20


class BadFramingTest(harness.E2ETestCase):
    timeout = 30

    def setUp(self):
        self.nats, self.echo, self.gw = peers.echo_stack("subj")
        self.listen = peers.natsraw_listen(self.nats, "subj.>", ms=25000)

    def tearDown(self):
        # After each test: the gateway still answers, and the only request that
        # ever reached NATS is this marker.
        resp, _ = peers.exchange(self.gw.port, b"GET /marker HTTP/1.1\r\nHost: x\r\n"
                                 b"Connection: close\r\n\r\n")
        self.assertEqual(resp.status, 200)
        msgs = peers.wait_listened(self.listen, lambda m: m.subject == "subj.GET.marker")
        self.assertEqual([m.subject for m in msgs], self.expected_on_nats + ["subj.GET.marker"])

    expected_on_nats: list = []

    def send(self, request: bytes):
        """All the gateway sends back for `request`: (responses, unparsed bytes, how it ended)."""
        data, how = harness.raw_http(self.gw.port, request, read_timeout=5, detail=True)
        data = peers.undouble_mhd_error(data)
        resps, rest = peers.split_responses(data, ["POST"])
        return resps, rest, how, data

    def assert_refused(self, request: bytes, statuses=(400, 501)):
        resps, rest, how, data = self.send(request)
        self.assertEqual(len(resps), 1, f"want exactly one response, got {data!r}")
        self.assertEqual(rest, b"", f"bytes after the response: {data!r}")
        self.assertIn(resps[0].status, statuses, data)
        self.assertEqual(resps[0].header("Connection"), "close", data)
        # It closes after refusing (a reset is fine once the whole answer is in).
        self.assertIn(how, ("closed", "reset"))
        self.assertNotIn(b"gotcha", data)
        return resps[0]

    def assert_refused_or_hello(self, request: bytes):
        """Either refused, or the body is taken as exactly `hello` (one Content-Length: 5)."""
        resps, rest, how, data = self.send(request.replace(b"\r\n\r\n",
                                                           b"\r\nConnection: close\r\n\r\n", 1))
        self.assertEqual(len(resps), 1, f"want exactly one response, got {data!r}")
        self.assertEqual(rest, b"", f"bytes after the response: {data!r}")
        if resps[0].status == 200:
            echoed = peers.echo_json(resps[0].body)
            self.assertEqual(echoed["length"], 5)
            self.assertEqual(echoed["sha256"], harness.sha256_bytes(b"hello"))
            self.assertEqual(peers.headers_named(echoed, "Content-Length"), ["5"])
            self.expected_on_nats = ["subj.POST.%"]
        else:
            self.assertEqual(resps[0].status, 400, data)
            self.assertEqual(resps[0].header("Connection"), "close", data)

    # -- BR-07
    def test_BR07_content_length_and_chunked(self):
        self.assert_refused(b"POST / HTTP/1.1\r\nHost: gw.example\r\nContent-Length: 0\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n20\r\n" + SMUGGLED
                            + b"\r\n0\r\n\r\n")

    def test_BR07_content_length_50_and_chunked_early_end(self):
        tail = b"0\r\n\r\n" + SMUGGLED
        tail += b"X" * (50 - len(tail))
        self.assert_refused(b"POST / HTTP/1.1\r\nHost: gw.example\r\nContent-Length: 50\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n" + tail)

    def test_BR07_chunked_before_content_length(self):
        self.assert_refused(b"POST / HTTP/1.1\r\nHost: gw.example\r\n"
                            b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
                            b"0\r\n\r\n" + SMUGGLED)

    def test_BR07_gzip_chunked(self):
        self.assert_refused(b"POST / HTTP/1.1\r\nHost: gw.example\r\n"
                            b"Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")

    def test_BR07_chunked_identity(self):
        self.assert_refused(b"POST / HTTP/1.1\r\nHost: gw.example\r\n"
                            b"Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n")

    def test_BR07_xchunked(self):
        self.assert_refused(b"POST / HTTP/1.1\r\nHost: gw.example\r\n"
                            b"Transfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")

    def test_BR07_two_transfer_encoding_lines(self):
        self.assert_refused(b"POST / HTTP/1.1\r\nHost: gw.example\r\n"
                            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"5\r\nhello\r\n0\r\n\r\n")

    # -- BR-08
    def test_BR08_two_differing_content_lengths(self):
        self.assert_refused(b"POST / HTTP/1.1\r\nHost: gw.example\r\nContent-Length: 0\r\n"
                            b"Content-Length: 40\r\n\r\nGET /evil HTTP/1.1\r\nHost: gotcha\r\n\r\n",
                            statuses=(400,))

    def test_BR08_content_length_list_of_identical_values(self):
        self.assert_refused_or_hello(b"POST / HTTP/1.1\r\nHost: gw.example\r\n"
                                     b"Content-Length: 5, 5\r\n\r\nhello")

    def test_BR08_two_identical_content_length_lines(self):
        self.assert_refused_or_hello(b"POST / HTTP/1.1\r\nHost: gw.example\r\n"
                                     b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello")

    def test_BR08_content_length_trailing_space(self):
        self.assert_refused_or_hello(b"POST / HTTP/1.1\r\nHost: gw.example\r\n"
                                     b"Content-Length: 5 \r\n\r\nhello")

    def test_BR08_content_length_plus(self):
        self.assert_refused(b"POST / HTTP/1.1\r\nHost: gw.example\r\nContent-Length: +5\r\n\r\n"
                            b"hello", statuses=(400,))

    def test_BR08_content_length_hex(self):
        self.assert_refused(b"POST / HTTP/1.1\r\nHost: gw.example\r\nContent-Length: 0x10\r\n\r\n"
                            b"hello", statuses=(400,))

    def test_BR08_content_length_not_a_number(self):
        self.assert_refused(b"POST / HTTP/1.1\r\nHost: gw.example\r\nContent-Length: abc\r\n\r\n"
                            b"hello", statuses=(400,))

    def test_BR08_content_length_negative(self):
        self.assert_refused(b"POST / HTTP/1.1\r\nHost: gw.example\r\nContent-Length: -5\r\n\r\n"
                            b"hello", statuses=(400,))

    def test_BR08_content_length_list_of_differing_values(self):
        self.assert_refused(b"POST / HTTP/1.1\r\nHost: gw.example\r\n"
                            b"Content-Length: 5, 40\r\n\r\nhello", statuses=(400,))


if __name__ == "__main__":
    harness.main()
