"""Graceful stop (issue 6, item 3): SIGTERM (or SIGINT) makes serve and the
gateway stop taking new work, let what is under way finish for up to
--grace seconds, then exit 0; a second signal exits at once.

    curl --limit-rate -> gateway -> nats-server -> serve (256 MiB sparse file)
"""

import http.client
import signal
import time

import harness
import test_cluster_common as cc
import test_flow_common as fc

MIB = cc.MIB
SIZE = 256 * MIB
RATE = "48M"        # about 5 s for the whole file: the signal lands mid-transfer


class DrainTest(harness.E2ETestCase):
    timeout = 240

    def setUp(self):
        self.nats = harness.Nats()
        self.dir1 = cc.instance_dir("s1", big=SIZE)

    def download(self, gw):
        dl = fc.Download(gw.base + "/big.bin", "--limit-rate", RATE, max_time=120)
        dl.wait_received(8 * MIB, 30)
        return dl

    def assert_whole(self, dl):
        rc, got, sha, err = dl.wait(120)
        self.assertEqual(rc, 0, err)
        self.assertEqual(got, SIZE)
        self.assertEqual(sha, fc.zero_sha256(SIZE))

    def test_serve_sigterm_finishes_download(self):
        s1 = harness.serve(self.nats, cc.SUBJECT, self.dir1, group="g", name="s1")
        gw = harness.gateway(self.nats, cc.SUBJECT)
        dl = self.download(gw)
        # A second instance joins; then the first is told to stop.
        harness.serve(self.nats, cc.SUBJECT, cc.instance_dir("s2"), group="g", name="s2")
        self.nats.wait_subs(cc.SUBJECT + ".probe", 2)
        s1.signal(signal.SIGTERM)
        s1.wait_for(r"stopping: no new requests")
        harness.wait_until(lambda: self.nats.subs_matching(cc.SUBJECT + ".probe") == 1, 10, 0.05,
                           "s1's request subscription drained")
        # New requests go to s2 while s1 finishes its download.
        for _ in range(10):
            self.assertEqual(cc.who(gw.port), "s2")
        self.assertTrue(s1.alive(), "serve exited before its download finished")
        self.assert_whole(dl)
        self.assertEqual(s1.wait(30), 0)
        self.assertRegex(s1.log_text(), r"serve: drained")

    def test_serve_upstream_sigterm_finishes_download(self):
        up = harness.HttpUpstream(self.dir1)
        s1 = harness.serve_upstream(self.nats, cc.SUBJECT, up.base, name="s1")
        gw = harness.gateway(self.nats, cc.SUBJECT)
        dl = self.download(gw)
        s1.signal(signal.SIGTERM)
        s1.wait_for(r"stopping: no new requests")
        harness.wait_until(lambda: self.nats.subs_matching(cc.SUBJECT + ".probe") == 0, 10, 0.05,
                           "the request subscription drained")
        status, _, _ = cc.get(gw.port, "/who.txt")
        self.assertEqual(status, 503)   # no responders: nobody takes new requests
        self.assertTrue(s1.alive(), "serve exited before its download finished")
        self.assert_whole(dl)
        self.assertEqual(s1.wait(30), 0)
        self.assertRegex(s1.log_text(), r"serve: drained")

    def test_gateway_sigterm_finishes_download(self):
        harness.serve(self.nats, cc.SUBJECT, self.dir1, name="s1")
        gw = harness.gateway(self.nats, cc.SUBJECT)
        dl = self.download(gw)
        keep = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        self.assertEqual(cc.get(gw.port, "/who.txt", conn=keep)[0], 200)   # kept alive
        gw.signal(signal.SIGINT)
        gw.wait_for(r"stopping: no new connections")
        # A new request on a connection already open: 503, and the connection closes.
        status, headers, body = cc.get(gw.port, "/who.txt", conn=keep)
        self.assertEqual(status, 503)
        self.assertEqual(headers.get("connection"), "close")
        self.assertEqual(body, b"natshttp gateway: the gateway is stopping\n")
        keep.close()
        # The listening socket is closed: a new connection is refused.
        rc, _, err = harness.curl("-sS", "-o", "/dev/null", gw.base + "/who.txt", max_time=10)
        self.assertEqual(rc, 7, f"curl to a draining gateway: {rc} {err}")
        self.assertTrue(gw.alive(), "gateway exited before its download finished")
        self.assert_whole(dl)
        self.assertEqual(gw.wait(30), 0)
        self.assertRegex(gw.log_text(), r"gateway: drained")

    def test_second_signal_exits_at_once(self):
        for who in ("serve", "gateway"):
            with self.subTest(who=who):
                # Short idle timeouts: the side left behind gives up on the
                # transfer its peer abandoned within 2 s.
                s1 = harness.serve(self.nats, cc.SUBJECT, self.dir1, "--idle-timeout", "2",
                                   name="s1")
                gw = harness.gateway(self.nats, cc.SUBJECT, "--idle-timeout", "2")
                dl = self.download(gw)
                p = s1 if who == "serve" else gw
                p.signal(signal.SIGTERM)
                p.wait_for(r"stopping:")
                t0 = time.monotonic()
                p.signal(signal.SIGTERM)
                self.assertEqual(p.wait(10), 128 + signal.SIGTERM)
                self.assertLess(time.monotonic() - t0, 5)
                rc, got, _, err = dl.wait(60)
                self.assertNotEqual(rc, 0, "the download must break off visibly")
                self.assertLess(got, SIZE)
                for q in (gw, s1):
                    if q.alive():
                        self.assertEqual(q.stop(check=True), 0)

    def test_grace_runs_out(self):
        """--grace 1 with a download that needs far longer: serve exits 0
        after about a second, and the download breaks off visibly."""
        s1 = harness.serve(self.nats, cc.SUBJECT, self.dir1, "--grace", "1", name="s1")
        gw = harness.gateway(self.nats, cc.SUBJECT)
        dl = fc.Download(gw.base + "/big.bin", "--limit-rate", "4M", max_time=120)
        dl.wait_received(MIB, 30)
        s1.signal(signal.SIGTERM)
        self.assertEqual(s1.wait(15), 0)
        self.assertRegex(s1.log_text(), r"1 request\(s\) still under way; aborting them")
        rc, got, _, err = dl.wait(60)
        self.assertEqual(rc, 18, err)
        self.assertLess(got, SIZE)


if __name__ == "__main__":
    harness.main()
