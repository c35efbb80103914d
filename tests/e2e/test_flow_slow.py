"""Slow and stalled HTTP clients under protocol v2 flow control (issue 4,
"Tests and benchmarks"; proxy case BR-21's single-client part), and
fairness of serve's worker pool.

    curl --limit-rate / raw socket -> gateway -> nats-server -> serve --dir

- a curl limited to 4 MB/s downloads 256 MiB intact while the peak RSS
  (VmHWM) of gateway and serve each stays below 32 MiB (about 64 s);
- a client that stops reading for 10 s, then resumes, gets all of a 64 MiB
  file intact, memory bounded;
- a client that never resumes, with --idle-timeout 3 on both sides: serve
  aborts and frees the transfer, the gateway closes the connection within
  8 s (3 s idle timeout + 5 s slack for this shared 2-core machine), and the
  next request is answered;
- serve --workers 1: a small GET answers within 2 s while a rate-limited
  256 MiB download is in progress.

Memory bounds are not asserted on sanitizer builds (ASan's shadow memory and
quarantine); the figures are printed either way.
"""

import hashlib
import socket
import time

import harness
import test_flow_common as fc
from test_flow_common import MIB

RSS_BOUND_MIB = 32
SMALL = b"a small file\n" * 100


class SlowClientTest(harness.E2ETestCase):
    timeout = 60

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = harness.tmpdir("root")
        cls.sha256 = harness.make_random_file(cls.root / "big256.bin", 256 * MIB, seed=256)
        cls.sha64 = harness.make_random_file(cls.root / "big64.bin", 64 * MIB, seed=64)
        (cls.root / "small.txt").write_bytes(SMALL)

    def stack(self, *serve_args, gateway_args=()):
        nats = harness.Nats()
        serve = harness.serve(nats, "site", self.root, "--log-level", "debug", *serve_args)
        gw = harness.gateway(nats, "site", *gateway_args)
        return nats, serve, gw

    def assert_small_get(self, gw):
        rc, body, err = harness.curl("-f", gw.base + "/small.txt")
        self.assertEqual(rc, 0, err)
        self.assertBytesEqual(body, SMALL)

    @harness.timeout(150)
    def test_slow_client_256MiB_at_4M(self):
        nats, serve, gw = self.stack()
        hdr = harness.tmpdir("hdr") / "headers"
        dl = fc.Download(gw.base + "/big256.bin", "--limit-rate", "4M", "-D", hdr,
                         max_time=130)
        rc, size, sha, err = dl.wait(140)
        fc.rss_report(f"256 MiB at 4 MB/s in {dl.ended - dl.started:.1f} s",
                      [("gateway", gw), ("serve", serve)])
        self.assertEqual(rc, 0, err)
        self.assertEqual(size, 256 * MIB)
        self.assertEqual(sha, self.sha256)
        self.assertIn(f"\r\nContent-Length: {256 * MIB}\r\n", hdr.read_bytes().decode("latin-1"))
        fc.assert_rss_below(self, gw, RSS_BOUND_MIB)
        fc.assert_rss_below(self, serve, RSS_BOUND_MIB)
        self.assertEqual(nats.varz()["slow_consumers"], 0)

    def open_get(self, gw, path: str, rcvbuf: int = 256 * 1024):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.connect(("127.0.0.1", gw.port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, headers, rest = fc.read_head(s, 10)
        self.assertEqual(status, 200)
        return s, int(headers["content-length"]), rest

    @harness.timeout(60)
    def test_stalled_10s_then_resumes_64MiB(self):
        nats, serve, gw = self.stack()
        s, cl, got = self.open_get(gw, "/big64.bin")
        self.assertEqual(cl, 64 * MIB)
        h = hashlib.sha256(got)
        n = len(got)
        with s:
            s.settimeout(10)
            while n < MIB:
                b = s.recv(65536)
                self.assertTrue(b, "connection closed early")
                h.update(b)
                n += len(b)
            time.sleep(10)                      # stop reading for 10 s
            while n < cl:
                b = s.recv(1 << 20)
                self.assertTrue(b, f"connection closed after {n} of {cl} bytes")
                h.update(b)
                n += len(b)
        fc.rss_report("64 MiB with a 10 s stall", [("gateway", gw), ("serve", serve)])
        self.assertEqual(n, 64 * MIB)
        self.assertEqual(h.hexdigest(), self.sha64)
        fc.assert_rss_below(self, gw, RSS_BOUND_MIB)
        fc.assert_rss_below(self, serve, RSS_BOUND_MIB)
        self.assertEqual(fc.log_lines(serve, r"aborted|went away"), [])
        self.assertEqual(nats.varz()["slow_consumers"], 0)

    @harness.timeout(60)
    def test_stalled_never_resumes_idle_timeout_3s(self):
        # The gateway's own idle timeout is longer, so that serve's (for want
        # of credit) is the one that fires; with both at 3 s either may win.
        nats, serve, gw = self.stack("--idle-timeout", "3",
                                     gateway_args=("--idle-timeout", "10"))
        s, cl, got = self.open_get(gw, "/big64.bin")
        n = len(got)
        with s:
            s.settimeout(10)
            while n < MIB:
                b = s.recv(65536)
                self.assertTrue(b, "connection closed early")
                n += len(b)
            t0 = time.monotonic()               # the client stops reading here
            deadline = t0 + 3 + 5
            # serve: the transfer is aborted for want of credit, and freed
            m = serve.wait_for(r"request (\d+): the client took nothing for 3000 ms; aborted",
                               max(deadline - time.monotonic(), 0.1))
            rid = m.group(1)
            serve.wait_for(rf"request {rid}: cancelled \(", 2)
            m = serve.wait_for(r"/big64\.bin: the client went away at (\d+)", 2)
            self.assertLess(int(m.group(1)), 64 * MIB)
            # gateway: the response is broken off, and the connection closed
            gw.wait_for(r"GET /big64\.bin: response broke off \(body ended early\); "
                        r"closing the connection", max(deadline - time.monotonic(), 0.1))
            try:
                gw.wait_for(r"access client=\S+ method=GET target=/big64\.bin status=200 in=0 "
                            r"out=\d+ dur_ms=\d+ subject=\S+ instance=\S+ end=broke_off reason=",
                            max(deadline - time.monotonic(), 0.1))
            except TimeoutError:
                self.fail(f"the gateway still holds the HTTP connection "
                          f"{time.monotonic() - t0:.1f} s after the client stopped reading "
                          f"(idle timeout 3 s)")
            # what the client can still read is short of Content-Length, then EOF/reset
            s.settimeout(5)
            try:
                while True:
                    b = s.recv(1 << 20)
                    if not b:
                        break
                    n += len(b)
            except ConnectionResetError:
                pass
            self.assertLess(n, cl)
        fc.rss_report("64 MiB, client never resumes", [("gateway", gw), ("serve", serve)])
        fc.assert_rss_below(self, gw, RSS_BOUND_MIB)
        fc.assert_rss_below(self, serve, RSS_BOUND_MIB)
        self.assert_small_get(gw)

    @harness.timeout(60)
    def test_fairness_small_get_during_big_download_workers_1(self):
        nats, serve, gw = self.stack("--workers", "1")
        dl = fc.Download(gw.base + "/big256.bin", "--limit-rate", "8M", max_time=60)
        try:
            dl.wait_received(8 * MIB, 20)
            self.assertIsNone(dl.p.poll(), "the big download is in progress")
            for i in range(5):
                t = time.monotonic()
                self.assert_small_get(gw)
                took = time.monotonic() - t
                self.assertLess(took, 2.0, f"small GET #{i} took {took:.2f} s")
                time.sleep(0.2)
            self.assertIsNone(dl.p.poll(), "the big download is still in progress")
            self.assertLess(dl.received, 256 * MIB)
        finally:
            dl.kill()
            dl.wait(10)


if __name__ == "__main__":
    harness.main()
