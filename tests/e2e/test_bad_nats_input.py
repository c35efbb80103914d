"""Bad input on the NATS side: messages published straight on a server's
subject (natsraw request), past any gateway, in both subject layouts.

Native layout: a subject that is not the canonical one of its path (another
escaping of the same bytes, a '/' smuggled in as %2F, a dot segment, no
segment), an unknown method token, a raw path that does not decode to the
subject's path, or a non-numeric Content-Length is answered with 400 (501 for
the method); an X-Path header is ignored (the subject is the path).
Compat layout: a request without X-Path, or whose X-Path or raw path does not
map to the subject it came on, is answered with 400.
Each rejection is logged once; a request without a reply subject is dropped
with a log line; after each, a normal request through the gateway works.
Both servers: `nats-http serve --dir` and echo_responder (libnatshttp).

    natsraw request -> nats-server -> nats-http serve --dir | echo_responder
    curl -> nats-http gateway -> nats-server -> (same)
"""

import harness
import peers

NATIVE_REJECTIONS = [
    # (name, subject suffix, headers, statuses)
    ("non-canonical escape", "GET.%73ecret", [], (400,)),
    ("lower-case hex", "GET.secre%74", [], (400,)),
    ("slash inside a token", "GET.a%2Fsecret", [], (400,)),
    ("dot segment", "GET.%2E%2E.secret", [], (400,)),
    ("single dot segment", "GET.%2E.secret", [], (400,)),
    ("no segment", "GET", [], (400,)),
    ("unknown method", "BREW.x", [], (501, 400)),
    ("lower-case method", "get.public", [], (501, 400)),
    ("compat subject", "public.GET", ["X-Path: /public"], (501, 400)),
    ("non-numeric Content-Length", "GET.public", ["Content-Length: abc"], (400,)),
    ("negative Content-Length", "GET.public", ["Content-Length: -1"], (400,)),
    ("raw path of another path", "GET.public", ["Natshttp-Raw-Path: /secr%65t"], (400,)),
    ("control byte", "GET.a%0D%0Asecret", [], (400,)),
]

COMPAT_REJECTIONS = [
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
    """Needs self.nats, self.server (its Proc), self.gw, self.prefix, self.check_normal(),
    and self.layout ("native" or "compat")."""

    layout = "native"

    @property
    def public(self):
        """The subject suffix and headers of a good request for /public."""
        if self.layout == "compat":
            return "public.GET", ["X-Path: /public"]
        return "GET.public", []

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
        cases = COMPAT_REJECTIONS if self.layout == "compat" else NATIVE_REJECTIONS
        for name, suffix, headers, statuses in cases:
            with self.subTest(name):
                self.reject(name, suffix, headers, statuses)

    def test_message_without_reply_dropped(self):
        since = self.server.log_size()
        suffix, headers = self.public
        peers.natsraw_publish(self.nats, f"{self.prefix}.{suffix}", headers)
        line = f"request on {self.prefix}.{suffix} has no reply subject; dropped"
        self.server.wait_for(line, since=since, timeout=5)
        self.check_normal()
        log = self.server.log_text().encode()[since:].decode()
        self.assertEqual(log.count(line), 1, log)
        self.assertTrue(self.server.alive())

    def test_correct_request_answered(self):
        suffix, headers = self.public
        msgs = peers.natsraw_request(self.nats, f"{self.prefix}.{suffix}", headers, ms=1000)
        self.assertEqual(len(msgs), 1, msgs)
        self.assertEqual(msgs[0].header("X-Status-Code"), "200")


class ForgedPathMixin:
    """Native layout: an X-Path header names nothing; the subject's path is served."""

    def test_forged_x_path_ignored(self):
        msgs = peers.natsraw_request(self.nats, f"{self.prefix}.GET.public",
                                     ["X-Path: /secret"], ms=1000)
        self.assertEqual(len(msgs), 1, msgs)
        self.assertEqual(msgs[0].header("X-Status-Code"), "200")
        self.assertNotIn(b"secret!", msgs[0].data)
        self.check_normal()


class ServeDirTest(harness.E2ETestCase, BadNatsInputMixin, ForgedPathMixin):
    timeout = 60
    prefix = "site"

    def setUp(self):
        self.nats = harness.Nats()
        self.dir = harness.tmpdir("site")
        (self.dir / "public").write_bytes(b"public\n")
        (self.dir / "secret").write_bytes(b"secret!\n")
        self.server = harness.serve(self.nats, self.prefix, self.dir, "--layout", self.layout)
        self.gw = harness.gateway(self.nats, self.prefix, "--layout", self.layout)

    def check_normal(self):
        rc, body, err = harness.curl("-f", self.gw.base + "/public")
        self.assertEqual(rc, 0, err)
        self.assertEqual(body, b"public\n")


class ServeDirCompatTest(ServeDirTest):
    layout = "compat"

    test_forged_x_path_ignored = None


class EchoTest(harness.E2ETestCase, BadNatsInputMixin):
    timeout = 60
    prefix = "echo"

    def setUp(self):
        self.nats, self.server, self.gw = peers.echo_stack(self.prefix, layout=self.layout)

    def check_normal(self):
        rc, body, err = harness.curl("-f", "--data-binary", "abc", self.gw.base + "/public?q")
        self.assertEqual(rc, 0, err)
        echoed = peers.echo_json(body)
        self.assertEqual((echoed["method"], echoed["path"], echoed["query"], echoed["length"],
                          echoed["sha256"]),
                         ("POST", "/public", "q", 3, harness.sha256_bytes(b"abc")))


class EchoCompatTest(EchoTest):
    layout = "compat"


if __name__ == "__main__":
    harness.main()
