"""Request bodies through the gateway with NATS's default max payload (1 MiB):
20 MiB uploads with Content-Length and chunked, small bodies, and the exact
single-message limit of protocol.md 3.

    curl / raw socket -> nats-http gateway -> nats-server -> echo_responder
"""

import harness
import peers

BIG = 20 * 1024 * 1024


class BigUploadTest(harness.E2ETestCase, peers.UploadChecks):
    timeout = 90
    gateway_args: tuple = ()     # default: v2 with peers that speak it

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.nats, cls.echo, cls.gw = peers.echo_stack("subj", *cls.gateway_args)
        cls.file = harness.tmpdir("big") / "big.bin"
        cls.sha = harness.make_random_file(cls.file, BIG, seed=20)

    def test_post_20MiB_content_length(self):
        status, echoed = self.curl_upload("/up/post", self.file, "POST", chunked=False)
        self.assert_echoed(status, echoed, "POST", BIG, self.sha, content_length=True)
        self.assertEqual(echoed["raw_path"], "/up/post")

    def test_put_20MiB_content_length(self):
        status, echoed = self.curl_upload("/up/put", self.file, "PUT", chunked=False)
        self.assert_echoed(status, echoed, "PUT", BIG, self.sha, content_length=True)

    def test_post_20MiB_chunked(self):
        status, echoed = self.curl_upload("/up/post", self.file, "POST", chunked=True)
        self.assert_echoed(status, echoed, "POST", BIG, self.sha, content_length=False)

    def test_put_20MiB_chunked(self):
        status, echoed = self.curl_upload("/up/put", self.file, "PUT", chunked=True)
        self.assert_echoed(status, echoed, "PUT", BIG, self.sha, content_length=False)

    def test_put_20MiB_raw_chunked_odd_sizes(self):
        body = self.file.read_bytes()
        status, echoed = self.raw_upload("/up/raw", body, "PUT", chunked_size=100003)
        self.assert_echoed(status, echoed, "PUT", BIG, self.sha, content_length=False)


class SmallBodyTest(harness.E2ETestCase, peers.UploadChecks):
    timeout = 30
    gateway_args: tuple = ()

    def setUp(self):
        self.nats, self.echo, self.gw = peers.echo_stack("subj", *self.gateway_args)

    def test_small_bodies_content_length(self):
        for size in (0, 1, 5):
            with self.subTest(size=size):
                body = b"hello"[:size]
                status, echoed = self.raw_upload(f"/small/{size}", body, "POST")
                self.assert_echoed(status, echoed, "POST", size, harness.sha256_bytes(body),
                                   content_length=True)

    def test_small_bodies_chunked(self):
        for size in (0, 1, 5):
            with self.subTest(size=size):
                body = b"hello"[:size]
                status, echoed = self.raw_upload(f"/small/{size}", body, "PUT", chunked_size=2)
                self.assert_echoed(status, echoed, "PUT", size, harness.sha256_bytes(body),
                                   content_length=False)

    def test_single_message_limit(self):
        listen = peers.natsraw_listen(self.nats, "subj.>", ms=25000)
        self.assertEqual(int(self.nats.varz()["max_payload"]), 1024 * 1024)
        self.check_single_message_boundary(self.nats, listen)


class BigUploadTestV1(BigUploadTest):
    """The same with the gateway speaking protocol v1 only."""
    gateway_args = ("--protocol", "1")


class SmallBodyTestV1(SmallBodyTest):
    """The same with the gateway speaking protocol v1 only."""
    gateway_args = ("--protocol", "1")


if __name__ == "__main__":
    harness.main()
