"""Malformed responses from the NATS side (BR-08 response side): a natsraw
peer answers with what our own server never would. A response with two
Content-Lengths, without or with a bad X-Status-Code, or whose single
message is shorter or longer than its Content-Length is a 502 at once (a
truncated single message is never a 200); a correct one passes, with its
status and reason phrase.

    raw socket -> nats-http gateway -> nats-server -> natsraw reply 'subj.>'
"""

import time

import harness
import peers

GOOD = (["X-Status-Code: 201", "Content-Length: 2"], "ok")


class BadResponseTest(harness.E2ETestCase):
    timeout = 60

    def setUp(self):
        self.nats = harness.Nats()
        self.gw = harness.gateway(self.nats, "subj", "--timeout", "5")

    def get(self, headers, data, path="/x"):
        """One GET answered by a natsraw peer with `headers` and `data`."""
        peer = peers.natsraw_reply(self.nats, "subj.>", headers, data=data, count=1)
        t0 = time.monotonic()
        resp, extra = peers.exchange(self.gw.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n"
                                     "Connection: close\r\n\r\n".encode())
        took = time.monotonic() - t0
        self.assertEqual(peer.wait(10), 0)
        self.assertEqual(extra, b"")
        return resp, took

    def assert_502(self, headers, data):
        resp, took = self.get(headers, data)
        self.assertEqual(resp.status, 502, resp)
        self.assertLess(took, 2, "a malformed response is a 502 at once, not after --timeout")
        self.assertNotIn(data.encode(), resp.body)
        for name in ("X-Status-Code", "X-Status", "Set-Cookie", "X-Peer"):
            self.assertEqual(resp.header_all(name), [])
        # The gateway still works for the next, correct response.
        ok, _ = self.get(*GOOD)
        self.assertEqual((ok.status, ok.body), (201, b"ok"))

    def test_BR08_response_two_content_lengths(self):
        self.assert_502(["X-Status-Code: 200", "Content-Length: 3", "Content-Length: 10",
                         "X-Peer: 1"], "Qzx")

    def test_BR08_response_content_length_list_differing(self):
        self.assert_502(["X-Status-Code: 200", "Content-Length: 3, 10", "X-Peer: 1"], "Qzx")

    def test_response_without_status_code(self):
        self.assert_502(["Content-Length: 2", "X-Peer: 1"], "Qz")

    def test_response_status_code_not_a_number(self):
        self.assert_502(["X-Status-Code: abc", "Content-Length: 2", "X-Peer: 1"], "Qz")

    def test_response_status_code_bad_forms(self):
        for code in ("20", "2000", "099", "20a", "-200", "2 0"):
            with self.subTest(code=code):
                self.assert_502([f"X-Status-Code: {code}", "Content-Length: 2", "X-Peer: 1"], "Qz")

    def test_response_content_length_not_a_number(self):
        self.assert_502(["X-Status-Code: 200", "Content-Length: 2x", "X-Peer: 1"], "Qz")

    def test_truncated_single_message_is_never_200(self):
        self.assert_502(["X-Status-Code: 200", "Content-Length: 10", "X-Peer: 1"], "Qzx")

    def test_single_message_longer_than_content_length(self):
        self.assert_502(["X-Status-Code: 200", "Content-Length: 2", "X-Peer: 1"], "Qzxw")

    def test_correct_response(self):
        resp, took = self.get(["X-Status-Code: 201", "Content-Length: 2",
                               "Content-Type: text/plain"], "ok")
        self.assertEqual(resp.status, 201)
        self.assertEqual(resp.reason, "Created")
        self.assertEqual(resp.body, b"ok")
        self.assertEqual(resp.header_all("Content-Length"), ["2"])
        self.assertEqual(resp.header_all("Content-Type"), ["text/plain"])
        self.assertEqual(resp.header_all("X-Status-Code"), [])
        self.assertEqual(resp.header_all("X-Status"), [])

    def test_custom_status_and_reason(self):
        resp, took = self.get(["X-Status-Code: 299", "X-Status: Custom", "Content-Length: 2"],
                              "ok")
        self.assertEqual(resp.status, 299)
        self.assertEqual(resp.body, b"ok")
        self.assertEqual(resp.header_all("X-Status-Code"), [])
        self.assertEqual(resp.header_all("X-Status"), [])
        # libmicrohttpd chooses the reason phrase itself (docs/limitations.md):
        # the status code is what reaches the client.
        self.assertNotEqual(resp.reason, "")

    def test_gateway_log_names_each_malformed_response(self):
        since = self.gw.log_size()
        for headers, data in ((["Content-Length: 2"], "ok"),
                              (["X-Status-Code: 200", "Content-Length: 10"], "abc")):
            resp, _ = self.get(headers, data)
            self.assertEqual(resp.status, 502)
        log = self.gw.log_text().encode()[since:].decode()
        self.assertEqual(log.count("response without X-Status-Code"), 1, log)
        self.assertEqual(log.count("body of 3 bytes, Content-Length 10"), 1, log)
        self.assertEqual(len(harness.access_entries(log, component="gateway", method="GET",
                                                    target="/x", status="502")), 2, log)


if __name__ == "__main__":
    harness.main()
