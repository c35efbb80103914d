"""Proxy cases BR-21, BR-22 and BR-25 (../shared/cases/proxy-cases.md) under
protocol v2.

- BR-21: ten parallel `curl --limit-rate 10k` on 2 MiB files plus one raw
  socket that sends a GET and never reads: the peak RSS of gateway and serve
  stays below 32 MiB, and nats-server counts no slow consumer. The ten are
  stopped after about 5 s (the case's 1 GB files would take a day at 10 kB/s).
- BR-22: nats-server with `max_payload: 65536`: a 65537-byte file and a
  200 kB upload arrive intact; a response head of 40 Set-Cookie headers of
  1.5 kB each (from natsraw) gives a 502 or arrives intact, never a hang, and
  the gateway's NATS connection stays up.
- BR-25: no responder: 503 with Retry-After at once (under 2 s with
  --timeout 30), every time; once a responder appears, 200.

Memory bounds are not asserted on sanitizer builds; the figures are printed
either way.
"""

import socket
import time

import harness
import peers
import test_flow_common as fc
from test_flow_common import MIB

RSS_BOUND_MIB = 32
NO_RESPONDERS = b"natshttp gateway: no responders on the subject\n"


class BR21SlowClientsTest(harness.E2ETestCase):
    timeout = 60

    def run_br21(self, *gateway_args):
        root = harness.tmpdir("root")
        shas = [harness.make_random_file(root / f"f{i}.bin", 2 * MIB, seed=100 + i)
                for i in range(10)]
        fc.zero_file(root / "zero1g.bin", 1024 * MIB)
        nats = harness.Nats()
        serve = harness.serve(nats, "site", root)
        gw = harness.gateway(nats, "site", *gateway_args)
        stalled = socket.create_connection(("127.0.0.1", gw.port))
        try:
            stalled.sendall(b"GET /zero1g.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            dls = [fc.Download(gw.base + f"/f{i}.bin", "--limit-rate", "10k", max_time=30)
                   for i in range(10)]
            try:
                time.sleep(5)
                running = [dl.p.poll() is None for dl in dls]
            finally:
                for dl in dls:
                    dl.kill()
                results = [dl.wait(10) for dl in dls]
            fc.rss_report("BR-21 " + (" ".join(gateway_args) or "default window"),
                          [("gateway", gw), ("serve", serve)])
            self.assertEqual(running, [True] * 10, "all ten still downloading after 5 s")
            for i, (_rc, size, sha, _err) in enumerate(results):
                self.assertGreater(size, 0, f"curl {i} received nothing")
                self.assertLess(size, 2 * MIB)
                self.assertEqual(sha, fc.sha256_prefix(root / f"f{i}.bin", size))
            fc.assert_rss_below(self, gw, RSS_BOUND_MIB)
            fc.assert_rss_below(self, serve, RSS_BOUND_MIB)
            self.assertEqual(nats.varz()["slow_consumers"], 0)
        finally:
            stalled.close()
        # and both still answer, whole
        rc, body, err = harness.curl("-f", gw.base + "/f3.bin")
        self.assertEqual((rc, harness.sha256_bytes(body)), (0, shas[3]), err)

    def test_BR21_ten_slow_clients_and_one_stalled(self):
        self.run_br21()

    def test_BR21_ten_slow_clients_and_one_stalled_window_1MiB(self):
        self.run_br21("--window", str(1 * MIB))


class BR22MaxPayloadTest(harness.E2ETestCase, peers.UploadChecks):
    timeout = 60

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = harness.tmpdir("root")
        cls.file_sha = harness.make_random_file(cls.root / "65537-bytes.bin", 65537, seed=22)
        cls.nats = harness.Nats("max_payload: 65536")
        assert cls.nats.varz()["max_payload"] == 65536
        # the gateway for natsraw first, so that its connection is the only one then
        cls.gw_raw = harness.gateway(cls.nats, "raw", "--timeout", "10", name="gateway-raw")
        conns = cls.nats.connz()["connections"]
        assert len(conns) == 1, conns
        cls.gw_raw_cid = conns[0]["cid"]
        harness.serve(cls.nats, "site", cls.root)
        peers.echo(cls.nats, "echo")
        cls.gw_site = harness.gateway(cls.nats, "site", name="gateway-site")
        cls.gw = harness.gateway(cls.nats, "echo", name="gateway-echo")
        cls.cookies = [f"c{i:02d}=" + chr(ord("a") + i % 26) * 1496 for i in range(40)]
        assert all(len(c) == 1500 for c in cls.cookies)

    def test_BR22_get_65537_byte_file(self):
        rc, body, err = harness.curl("-f", self.gw_site.base + "/65537-bytes.bin")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(body), 65537)
        self.assertEqual(harness.sha256_bytes(body), self.file_sha)

    def test_BR22_post_200kB(self):
        body = bytes(range(256)) * 781 + b"x" * 64          # 200,000 bytes
        self.assertEqual(len(body), 200000)
        sha = harness.sha256_bytes(body)
        status, echoed = self.raw_upload("/upload", body, "POST")
        self.assert_echoed(status, echoed, "POST", 200000, sha, content_length=True)
        status, echoed = self.raw_upload("/upload", body, "POST", chunked_size=30000)
        self.assert_echoed(status, echoed, "POST", 200000, sha, content_length=False)

    def test_BR22_response_with_40_set_cookie_headers(self):
        raw = peers.natsraw_reply(self.nats, "raw.>",
                                  ["X-Status-Code: 200", "X-Status: OK", "Content-Length: 10"]
                                  + [f"Set-Cookie: {c}" for c in self.cookies],
                                  data="0123456789")
        self.nats.wait_subs("raw.GET.cookies")
        t = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.gw_raw.port), timeout=15) as s:
            s.sendall(b"GET /cookies HTTP/1.1\r\nHost: x\r\n\r\n")
            _interim, resp, _rest = peers.read_response(s, "GET", timeout=15)
        took = time.monotonic() - t
        self.assertLess(took, 5, "an answer, not a hang (the gateway's --timeout is 10 s)")
        self.assertIn(resp.status, (200, 502), resp)
        if resp.status == 200:
            self.assertEqual(resp.header_all("Set-Cookie"), self.cookies)
            self.assertEqual(resp.body, b"0123456789")
        else:
            self.assertEqual(resp.header_all("Set-Cookie"), [])
            self.assertTrue(resp.body.startswith(b"natshttp gateway: "), resp.body)
        raw.stop()
        self.assert_gateway_connection_up()

    def test_BR22_request_head_over_the_limit_431(self):
        # 24 headers of 1.5 kB: 36 kB, over the 32 KiB head limit, under max_payload
        hdrs = b"".join(f"X-Big-{i:02d}: {c}\r\n".encode() for i, c in
                        enumerate(self.cookies[:24]))
        resp, _extra = peers.exchange(self.gw_raw.port,
                                      b"GET /big-head HTTP/1.1\r\nHost: x\r\n" + hdrs + b"\r\n")
        self.assertEqual(resp.status, 431)
        self.assert_gateway_connection_up()

    def assert_gateway_connection_up(self):
        cids = [c["cid"] for c in self.nats.connz()["connections"]]
        self.assertIn(self.gw_raw_cid, cids, "the gateway's NATS connection is the same one")
        self.assertEqual(fc.log_lines(self.gw_raw, r"disconnected from NATS|reconnected"), [])
        # and it still carries requests
        reply = peers.natsraw_reply(self.nats, "raw.>", ["X-Status-Code: 200",
                                                         "Content-Length: 2"], data="ok",
                                    name="natsraw-ok")
        self.nats.wait_subs("raw.GET.ok")
        rc, body, err = harness.curl("-f", self.gw_raw.base + "/ok", max_time=10)
        self.assertEqual((rc, body), (0, b"ok"), err)
        reply.stop()


class BR25NoRespondersTest(harness.E2ETestCase):
    timeout = 60

    def test_BR25_503_at_once_then_200_when_a_responder_appears(self):
        root = harness.tmpdir("root")
        (root / "index.html").write_bytes(b"<p>here now</p>\n")
        nats = harness.Nats()
        gw = harness.gateway(nats, "nobody", "--timeout", "30")
        for i in range(3):
            t = time.monotonic()
            resp, extra = peers.exchange(gw.port,
                                         b"GET /index.html HTTP/1.1\r\nHost: gw.example\r\n\r\n")
            took = time.monotonic() - t
            self.assertEqual(resp.status, 503)
            self.assertEqual(resp.header("Retry-After"), "1")
            self.assertEqual(resp.body, NO_RESPONDERS)
            self.assertEqual(extra, b"")
            self.assertLess(took, 2, f"request {i}: 503 after {took:.2f} s, not at once")
        harness.serve(nats, "nobody", root)
        nats.wait_subs("nobody.GET.index%2Ehtml")
        resp, _ = peers.exchange(gw.port, b"GET /index.html HTTP/1.1\r\nHost: gw.example\r\n\r\n")
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.body, b"<p>here now</p>\n")


if __name__ == "__main__":
    harness.main()
