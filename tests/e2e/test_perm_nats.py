"""NATS permissions decide who may call which path with which method (issue 5).

nats-server runs docs/examples/permissions.conf, the configuration that
docs/permissions.md explains: `reader` may publish requests only to
site.GET.> and site.HEAD.>, `writer` adds site.PUT.uploads.>, `service` may
subscribe to site.> (and its own inbox). Nobody may publish anything else:
credits, upload pieces and cancels go as responses (allow_responses).

    curl -> gateway (as reader | writer) -> nats-server -> serve --dir | echo (as service)

A refused publish is answered 403 at once (not after the timeout), and the
gateway's NATS connection stays up. A raw NATS client with the reader's
credentials cannot get around it: a forged X-Path names nothing in the native
layout and is refused in the compat layout; it cannot publish into another
user's transfer nor subscribe to another user's responses.
"""

import pathlib
import random

import harness
import peers
from peers import Conn, raw_request

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG = (ROOT / "docs" / "examples" / "permissions.conf").read_text()
USERS = {"reader": "reader-secret", "writer": "writer-secret", "service": "service-secret"}
DENIED = b"natshttp gateway: NATS permission denied\n"
BIG = 3 * 1024 * 1024 + 17   # several pieces at the default 1 MiB max payload


def url(nats: harness.Nats, user: str) -> str:
    return nats.client_url(user, USERS[user])


def inbox(user: str) -> str:
    return f"_INBOX_{user}"


def gateway_as(nats, user, *extra, name=None):
    return harness.gateway(url(nats, user), "site", "--inbox-prefix", inbox(user),
                           "--timeout", "20", *extra, name=name or f"gateway-{user}")


def connection_ids(nats: harness.Nats, user: str) -> list[int]:
    return sorted(c["cid"] for c in nats.connz(auth=1).get("connections", [])
                  if c.get("authorized_user") == user)


class ReaderTest(harness.E2ETestCase):
    """The reader's gateway: GET and HEAD work; PUT, DELETE, POST are 403 at once."""

    timeout = 120

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.nats = harness.Nats(CONFIG, name="nats-perm")
        cls.root = harness.tmpdir("site")
        cls.big = random.Random(5).randbytes(BIG)
        (cls.root / "big.bin").write_bytes(cls.big)
        (cls.root / "public").write_bytes(b"public\n")
        (cls.root / "secret").write_bytes(b"secret!\n")
        (cls.root / "uploads").mkdir()
        cls.serve = harness.serve(url(cls.nats, "service"), "site", cls.root,
                                  "--inbox-prefix", inbox("service"))
        cls.gw = gateway_as(cls.nats, "reader")
        cls.gw1 = gateway_as(cls.nats, "reader", "--protocol", "1", name="gateway-reader-v1")

    def test_no_permission_violation_of_our_own(self):
        # the documented permissions are enough for everything the parts do
        rc, body, err = harness.curl("-f", self.gw.base + "/public")
        self.assertEqual(rc, 0, err)
        for p in (self.serve, self.gw, self.gw1):
            self.assertNotIn("Permissions Violation", p.log_text(), p.name)

    def test_get_and_head(self):
        for gw in (self.gw, self.gw1):
            with self.subTest(gateway=gw.name):
                rc, body, err = harness.curl("-f", gw.base + "/big.bin")
                self.assertEqual(rc, 0, err)
                self.assertEqual(harness.sha256_bytes(body), harness.sha256_bytes(self.big))
                r = raw_request(gw.port, "HEAD", "/big.bin")
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.header("Content-Length"), str(BIG))
                self.assertEqual(r.body, b"")

    def test_other_methods_403_and_the_connection_stays(self):
        before = connection_ids(self.nats, "reader")
        self.assertEqual(len(before), 2, before)
        with Conn(self.gw.port) as c:
            for method, body in (("PUT", b"x" * 100), ("DELETE", None), ("POST", b"y"),
                                 ("PUT", random.Random(1).randbytes(BIG)), ("PATCH", b"z")):
                with self.subTest(method=method, size=len(body or b"")):
                    since = self.gw.log_size()
                    r = c.request(method, "/uploads/new", body=body)
                    # 403, not a 504 after --timeout 20: the refusal came back at once
                    self.assertEqual(r.status, 403, r)
                    self.assertEqual(r.body, DENIED)
                    self.gw.wait_for(r"NATS refused the publish to site\.%s\.uploads\.new" % method,
                                     since=since, timeout=5)
                    if (r.header("Connection") or "").lower() == "close":
                        c.close()
                        c = Conn(self.gw.port)
                    # the next request on the same gateway works
                    g = c.request("GET", "/public")
                    self.assertEqual((g.status, g.body), (200, b"public\n"))
        self.assertEqual(connection_ids(self.nats, "reader"), before)
        self.assertFalse((self.root / "uploads" / "new").exists())

    def test_forged_x_path_reaches_nothing(self):
        # the reader, on NATS directly: the subject it may publish names the path
        msgs = peers.natsraw_request(url(self.nats, "reader"), "site.GET.public",
                                     ["X-Path: /secret", "Natshttp-Raw-Path: /public"],
                                     ms=2000, inbox_prefix=inbox("reader"))
        self.assertEqual(len(msgs), 1, msgs)
        self.assertEqual(msgs[0].header("X-Status-Code"), "200")
        self.assertEqual(msgs[0].data, b"public\n")
        # and it may not publish the subject of a write
        violation = peers.natsraw_publish(self.nats, "site.PUT.uploads.x", ["X-Path: /uploads/x"],
                                          data="data", user="reader",
                                          password=USERS["reader"])
        self.assertIn('Permissions Violation for Publish to "site.PUT.uploads.x"', violation)

    def test_no_injection_into_other_transfers(self):
        # Private subjects of other users: neither publishable nor readable.
        for subject in (inbox("writer") + ".abc.1", inbox("service") + ".abc.1.0",
                        "_INBOX.abc.1", inbox("reader") + ".abc.1"):
            with self.subTest(subject=subject):
                violation = peers.natsraw_publish(self.nats, subject, ["Natshttp-Credit: 99"],
                                                  user="reader", password=USERS["reader"])
                self.assertIn(f'Permissions Violation for Publish to "{subject}"', violation)
        listen = peers.natsraw_listen(url(self.nats, "reader"), inbox("writer") + ".>", ms=3000,
                                      name="natsraw-snoop")
        line = f'Subscription Violation - User "reader", Subject "{inbox("writer")}.>"'
        harness.wait_until(lambda: line in self.nats.log_text(), 5, 0.05,
                           "the subscription refused")
        listen.stop()


class WriterTest(harness.E2ETestCase, peers.UploadChecks):
    """The writer's gateway: PUT under /uploads/ works (v1 and v2, any size);
    PUT elsewhere and DELETE are 403; a dot segment never reaches a subject."""

    timeout = 120

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.nats = harness.Nats(CONFIG, name="nats-perm-w")
        cls.echo = peers.echo(url(cls.nats, "service"), "site", inbox_prefix=inbox("service"))
        cls.gws = {p: gateway_as(cls.nats, "writer", "--protocol", str(p),
                                 name=f"gateway-writer-v{p}") for p in (1, 2)}

    def test_put_under_uploads(self):
        body = random.Random(7).randbytes(BIG)
        for proto, gw in self.gws.items():
            for chunked in (False, True):
                with self.subTest(protocol=proto, chunked=chunked):
                    self.gw = gw
                    status, echoed = self.raw_upload("/uploads/blob.bin", body, "PUT",
                                                     chunked_size=65536 if chunked else 0)
                    self.assertEqual(status, 200)
                    self.assertEqual(echoed["method"], "PUT")
                    self.assertEqual(echoed["path"], "/uploads/blob.bin")
                    self.assertEqual(echoed["length"], BIG)
                    self.assertEqual(echoed["sha256"], harness.sha256_bytes(body))
                    self.assertEqual(echoed["complete"], True)

    def test_put_elsewhere_and_delete_403(self):
        for proto, gw in self.gws.items():
            for method, target, body in (("PUT", "/other/blob.bin", b"x" * 10),
                                         ("PUT", "/uploadsx/blob", b"x"),
                                         ("PUT", "/other/big", random.Random(2).randbytes(BIG)),
                                         ("DELETE", "/uploads/blob.bin", None)):
                with self.subTest(protocol=proto, method=method, target=target):
                    r = raw_request(gw.port, method, target, body=body)
                    self.assertEqual(r.status, 403, r)
                    self.assertEqual(r.body, DENIED)

    def test_dot_segments_never_reach_a_subject(self):
        listen = peers.natsraw_listen(self.nats.client_url("service", USERS["service"]),
                                      "site.>", ms=5000, name="natsraw-service")
        for target in ("/uploads/../secret", "/uploads/%2e%2e/secret", "/uploads/./x"):
            with self.subTest(target=target):
                r = raw_request(self.gws[2].port, "PUT", target, body=b"evil")
                self.assertEqual(r.status, 400, r)
                self.assertEqual(r.body, b"natshttp gateway: path has a . or .. segment\n")
        r = raw_request(self.gws[2].port, "PUT", "/uploads/marker", body=b"ok")
        self.assertEqual(r.status, 200, r)
        msgs = peers.wait_listened(listen, lambda m: m.subject == "site.PUT.uploads.marker")
        self.assertEqual([m.subject for m in msgs], ["site.PUT.uploads.marker"])


class CompatLayoutTest(harness.E2ETestCase):
    """--layout compat: the subject is lossy, so the server checks X-Path
    against it; a reader allowed only site.public.GET cannot read /secret."""

    timeout = 60

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        conf = CONFIG.replace('"site.GET.>", "site.HEAD.>"]', '"site.public.GET"]', 1)
        assert conf != CONFIG
        cls.nats = harness.Nats(conf, name="nats-perm-compat")
        cls.root = harness.tmpdir("site")
        (cls.root / "public").write_bytes(b"public\n")
        (cls.root / "secret").write_bytes(b"secret!\n")
        cls.serve = harness.serve(url(cls.nats, "service"), "site", cls.root, "--layout",
                                  "compat", "--inbox-prefix", inbox("service"))
        cls.gw = gateway_as(cls.nats, "reader", "--layout", "compat")

    def test_allowed_path_works_other_paths_403(self):
        r = raw_request(self.gw.port, "GET", "/public")
        self.assertEqual((r.status, r.body), (200, b"public\n"))
        r = raw_request(self.gw.port, "GET", "/secret")
        self.assertEqual((r.status, r.body), (403, DENIED))

    def test_forged_x_path_refused(self):
        msgs = peers.natsraw_request(url(self.nats, "reader"), "site.public.GET",
                                     ["X-Path: /secret"], ms=2000, inbox_prefix=inbox("reader"))
        self.assertEqual(len(msgs), 1, msgs)
        self.assertEqual(msgs[0].header("X-Status-Code"), "400")
        self.assertNotIn(b"secret!", msgs[0].data)
        msgs = peers.natsraw_request(url(self.nats, "reader"), "site.public.GET",
                                     ["X-Path: /public"], ms=2000, inbox_prefix=inbox("reader"))
        self.assertEqual([(m.header("X-Status-Code"), m.data) for m in msgs],
                         [("200", b"public\n")])


if __name__ == "__main__":
    harness.main()
