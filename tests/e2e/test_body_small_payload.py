"""Request bodies with nats-server `max_payload: 65536`: bodies just over
one message (65537 bytes), 200 KB and 5 MiB take the chunked path and arrive
intact, and the single-message limit moves with the server's max payload
(BR-22 request side).

    curl / raw socket -> nats-http gateway -> nats-server (64 KiB) -> echo_responder
"""

import random

import harness
import peers

MAX_PAYLOAD = 65536


class SmallPayloadTest(harness.E2ETestCase, peers.UploadChecks):
    timeout = 60
    gateway_args: tuple = ()     # default: v2 with peers that speak it

    def setUp(self):
        self.nats, self.echo, self.gw = peers.echo_stack(
            "subj", *self.gateway_args, nats_config=f"max_payload: {MAX_PAYLOAD}")
        self.assertEqual(int(self.nats.varz()["max_payload"]), MAX_PAYLOAD)
        self.listen = peers.natsraw_listen(self.nats, "subj.>", ms=50000)

    def first_messages(self, path: str) -> list:
        subject = peers.native("subj", "POST", path)
        return [m for m in peers.listened(self.listen) if m.subject == subject]

    def check_chunked_path(self, size: int, chunked_size: int = 0):
        path = f"/size/b{size}/{'chunked' if chunked_size else 'length'}"
        body = random.Random(size).randbytes(size)
        status, echoed = self.raw_upload(path, body, "POST", chunked_size=chunked_size)
        self.assert_echoed(status, echoed, "POST", size, harness.sha256_bytes(body),
                           content_length=not chunked_size)
        # One first message on the request subject, carrying only a part of
        # the body: the rest went to the responder's private subject.
        first = self.first_messages(path)
        self.assertEqual(len(first), 1, first)
        self.assertLess(len(first[0].data), size)
        self.assertLessEqual(len(first[0].data) + peers.header_block_size(first[0].headers),
                             MAX_PAYLOAD)
        if chunked_size:
            self.assertEqual(first[0].header_all("Transfer-Encoding"), ["chunked"])
            self.assertEqual(first[0].header_all("Content-Length"), [])
        else:
            self.assertEqual(first[0].header_all("Content-Length"), [str(size)])
            self.assertEqual(first[0].header_all("Transfer-Encoding"), [])

    def test_65537_bytes_content_length(self):
        self.check_chunked_path(65537)

    def test_65537_bytes_chunked(self):
        self.check_chunked_path(65537, chunked_size=65537)

    def test_BR22_200KB_content_length(self):
        self.check_chunked_path(200_000)

    def test_BR22_200KB_chunked(self):
        self.check_chunked_path(200_000, chunked_size=7_000)

    def test_5MiB_curl_put(self):
        f = harness.tmpdir("5m") / "f.bin"
        sha = harness.make_random_file(f, 5 * 1024 * 1024, seed=5)
        status, echoed = self.curl_upload("/size/curl", f, "PUT", chunked=False)
        self.assert_echoed(status, echoed, "PUT", 5 * 1024 * 1024, sha, content_length=True)
        status, echoed = self.curl_upload("/size/curl", f, "PUT", chunked=True)
        self.assert_echoed(status, echoed, "PUT", 5 * 1024 * 1024, sha, content_length=False)

    def test_single_message_limit(self):
        self.check_single_message_boundary(self.nats, self.listen)

    def test_nats_connection_never_dropped(self):
        before = sorted(c["cid"] for c in self.nats.connz()["connections"])
        self.assertEqual(len(before), 3)     # echo, gateway, natsraw listen
        total = int(self.nats.varz()["total_connections"])
        self.check_chunked_path(200_000)
        self.check_chunked_path(65537)
        # Each is still on the connection it started with.
        self.assertEqual(sorted(c["cid"] for c in self.nats.connz()["connections"]), before)
        varz = self.nats.varz()
        self.assertEqual(int(varz["total_connections"]), total)
        self.assertEqual(int(varz["slow_consumers"]), 0)
        self.assertNotIn("maximum payload", self.nats.log_text().lower())


class SmallPayloadTestV1(SmallPayloadTest):
    """The same with the gateway speaking protocol v1 only."""
    gateway_args = ("--protocol", "1")


if __name__ == "__main__":
    harness.main()
