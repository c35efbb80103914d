"""Bad input on the NATS side: messages published straight on a server's
subject (natsraw request), past any gateway. A request without X-Path, with
an unknown method token, a non-numeric Content-Length, an X-Path or raw path
that does not map to the subject it came on, is answered with 400 (501 for
the method) and logged once; a request without a reply subject is dropped
with a log line; after each, a normal request through the gateway works.
Both servers: `nats-http serve --dir` and echo_responder (libnatshttp).

    natsraw request -> nats-server -> nats-http serve --dir | echo_responder
    curl -> nats-http gateway -> nats-server -> (same)
"""

import harness
import peers

REJECTIONS = [
    # (name, subject suffix, headers, statuses)
    ("no X-Path", "x.GET", ["Host: x"], (400,)),
    ("no headers at all", "x.GET", [], (400,)),
    ("unknown method", "x.BREW", ["X-Path: /x"], (501, 400)),
    ("lower-case method", "public.get", ["X-Path: /public"], (501, 400)),
    ("non-numeric Content-Length", "public.GET", ["X-Path: /public", "Content-Length: abc"],
     (400,)),
    ("negative Content-Length", "public.GET", ["X-Path: /public", "Content-Length: -1"],
     (400,)),
    ("X-Path of another subject", "public.GET", ["X-Path: /secret"], (400,)),
    ("relative X-Path", "public.GET", ["X-Path: public"], (400,)),
    ("raw path of another path", "public.GET",
     ["X-Path: /public", "Natshttp-Raw-Path: /secr%65t"], (400,)),
]


class BadNatsInputMixin:
    """Needs self.nats, self.server (its Proc), self.gw, self.prefix, self.check_normal()."""

    def reject(self, name, suffix, headers, statuses):
        subject = f"{self.prefix}.{suffix}"
        since = self.server.log_size()
        msgs = peers.natsraw_request(self.nats, subject, headers, ms=500)
        self.assertEqual(len(msgs), 1, f"{name}: want one reply, got {msgs}")
        m = msgs[0]
        self.assertIn(int(m.header("X-Status-Code")), statuses, f"{name}: {m}")
        self.assertEqual(m.header_all("Content-Type"), ["text/plain; charset=utf-8"])
        self.assertEqual(m.header_all("Content-Length"), [str(len(m.data))])
        self.assertNotIn(b"secret!", m.data)
        self.assertEqual(m.reply, "")
        log = self.server.log_text().encode()[since:].decode()
        lines = [ln for ln in log.splitlines() if f"rejected request on {subject}:" in ln]
        self.assertEqual(len(lines), 1, f"{name}: one log line per rejection, got {log!r}")
        self.assertIn(f"({m.header('X-Status-Code')})", lines[0])
        self.check_normal()

    def test_rejections(self):
        for name, suffix, headers, statuses in REJECTIONS:
            with self.subTest(name):
                self.reject(name, suffix, headers, statuses)

    def test_message_without_reply_dropped(self):
        since = self.server.log_size()
        peers.natsraw_publish(self.nats, f"{self.prefix}.public.GET", ["X-Path: /public"])
        line = f"request on {self.prefix}.public.GET has no reply subject; dropped"
        self.server.wait_for(line, since=since, timeout=5)
        self.check_normal()
        log = self.server.log_text().encode()[since:].decode()
        self.assertEqual(log.count(line), 1, log)
        self.assertTrue(self.server.alive())

    def test_correct_request_answered(self):
        msgs = peers.natsraw_request(self.nats, f"{self.prefix}.public.GET",
                                     ["X-Path: /public"], ms=1000)
        self.assertEqual(len(msgs), 1, msgs)
        self.assertEqual(msgs[0].header("X-Status-Code"), "200")


class ServeDirTest(harness.E2ETestCase, BadNatsInputMixin):
    timeout = 60
    prefix = "site"

    def setUp(self):
        self.nats = harness.Nats()
        self.dir = harness.tmpdir("site")
        (self.dir / "public").write_bytes(b"public\n")
        (self.dir / "secret").write_bytes(b"secret!\n")
        self.server = harness.serve(self.nats, self.prefix, self.dir)
        self.gw = harness.gateway(self.nats, self.prefix)

    def check_normal(self):
        rc, body, err = harness.curl("-f", self.gw.base + "/public")
        self.assertEqual(rc, 0, err)
        self.assertEqual(body, b"public\n")


class EchoTest(harness.E2ETestCase, BadNatsInputMixin):
    timeout = 60
    prefix = "echo"

    def setUp(self):
        self.nats, self.server, self.gw = peers.echo_stack(self.prefix)

    def check_normal(self):
        rc, body, err = harness.curl("-f", "--data-binary", "abc", self.gw.base + "/public?q")
        self.assertEqual(rc, 0, err)
        echoed = peers.echo_json(body)
        self.assertEqual((echoed["method"], echoed["path"], echoed["query"], echoed["length"],
                          echoed["sha256"]),
                         ("POST", "/public", "q", 3, harness.sha256_bytes(b"abc")))


if __name__ == "__main__":
    harness.main()
