"""The gateway when the NATS side does not answer: no responders (BR-25) and a
responder that never answers (504 after --timeout)."""

import time

import harness
import peers
from test_static_common import Conn, make_tree, raw_get, wire_leaks

NO_RESPONDERS = b"natshttp gateway: no responders on the subject\n"


class NoRespondersTest(harness.E2ETestCase):
    timeout = 45

    def assert503(self, r, what):
        self.assertEqual(r.status, 503, f"{what}: {r}")
        self.assertEqual(r.header_all("Retry-After"), ["1"], what)
        self.assertEqual(r.header_all("Content-Length"), [str(len(r.body))], what)
        self.assertBytesEqual(r.body, NO_RESPONDERS, what)
        self.assertEqual(wire_leaks(r.headers), [], what)

    def test_BR25_no_responders_503_at_once_then_served(self):
        tree = make_tree(harness.tmpdir("tree"))
        nats = harness.Nats()
        gw = harness.gateway(nats, "nobody", "--timeout", "30")
        # fresh connections
        for i in range(3):
            t0 = time.monotonic()
            r = raw_get(gw.port, "/index.html")
            elapsed = time.monotonic() - t0
            self.assert503(r, f"request {i}")
            self.assertLess(elapsed, 2.0, f"503 took {elapsed:.2f}s with --timeout 30")
        # one keep-alive connection: GET, HEAD, a POST with a body, GET again
        with Conn(gw.port) as c:
            for method, body in (("GET", None), ("HEAD", None), ("POST", b"x" * 5000),
                                 ("GET", None)):
                t0 = time.monotonic()
                r = c.request(method, "/index.html", body=body)
                self.assertLess(time.monotonic() - t0, 2.0, method)
                self.assertEqual(r.status, 503, f"{method}: {r}")
                self.assertEqual(r.header_all("Retry-After"), ["1"])
                self.assertBytesEqual(r.body, b"" if method == "HEAD" else NO_RESPONDERS)
                self.assertEqual(r.header_all("Content-Length"), [str(len(NO_RESPONDERS))])
                if (r.header("Connection") or "").lower() == "close":
                    self.assertTrue(c.at_eof(2))
                    break

        # a responder appears: served
        serve = harness.serve(nats, "nobody", tree.root)
        nats.wait_subs("nobody.GET.index%2Ehtml", 1)
        r = raw_get(gw.port, "/index.html")
        self.assertEqual(r.status, 200, r)
        self.assertBytesEqual(r.body, tree.files["/index.html"])

        # it goes away again: 503 again, at once
        self.assertEqual(serve.stop(check=True), 0)
        harness.wait_until(lambda: nats.subs_matching("nobody.GET.index%2Ehtml") == 0, 10, 0.05,
                           "serve's subscription gone")
        t0 = time.monotonic()
        r = raw_get(gw.port, "/index.html")
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assert503(r, "after serve stopped")


class TimeoutTest(harness.E2ETestCase):
    timeout = 45

    def test_silent_responder_504_after_timeout(self):
        nats = harness.Nats()
        # a subscriber that never answers: no "no responders", no response either
        listen = peers.natsraw_listen(nats, "silent.>", ms=60000)
        nats.wait_subs("silent.GET.x", 1)
        gw = harness.gateway(nats, "silent", "--timeout", "2")
        with Conn(gw.port) as c:
            for i in range(2):
                t0 = time.monotonic()
                r = c.request("GET", "/x")
                elapsed = time.monotonic() - t0
                self.assertEqual(r.status, 504, r)
                self.assertGreaterEqual(elapsed, 1.5, f"504 after {elapsed:.2f}s, timeout 2")
                self.assertLess(elapsed, 10, f"504 after {elapsed:.2f}s, timeout 2")
                self.assertEqual(r.header_all("Content-Length"), [str(len(r.body))])
                self.assertBytesEqual(r.body, b"natshttp gateway: no response in time\n")
                self.assertEqual(wire_leaks(r.headers), [])
                if (r.header("Connection") or "").lower() == "close":
                    break
        # the requests did reach the subscriber
        msgs = peers.listened(listen)
        self.assertGreaterEqual(len(msgs), 1)
        self.assertEqual({m.subject for m in msgs}, {"silent.GET.x"})

    def test_request_cli_times_out(self):
        nats = harness.Nats()
        peers.natsraw_listen(nats, "silent.>", ms=60000)
        nats.wait_subs("silent.GET.x", 1)
        t0 = time.monotonic()
        rc, out, err = harness.request(nats, "-t", "1", "nats+http://silent/x")
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 1, err)
        self.assertEqual(out, b"")
        self.assertGreaterEqual(elapsed, 0.75)
        self.assertLess(elapsed, 10)


if __name__ == "__main__":
    harness.main()
