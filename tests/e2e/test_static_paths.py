"""Paths through gateway -> NATS -> serve --dir: errors (404, 405), directories
(index.html, --list, the slash redirect), traversal attempts (BR-16) and names
that a v1 subject cannot carry (space, '*', '>', '%', empty segments)."""

import pathlib
import re

import harness
import test_static_common as common
import peers
from test_static_common import Conn, build_request, curl_get, make_tree, raw_get, wire_leaks

NOT_FOUND = b"404 Not Found\n"
NOT_ALLOWED = b"405 Method Not Allowed\n"


def passwd_marker() -> bytes:
    """The first line of /etc/passwd (what a leak of it would contain)."""
    try:
        return pathlib.Path("/etc/passwd").read_bytes().splitlines()[0]
    except (OSError, IndexError):
        return b"root:x:0:0:"


class PathBase(common.StaticBase):

    def get(self, path, headers=(), method="GET", body=None):
        if body is None:
            return raw_get(self.gw.port, path, headers, method)
        data = harness.raw_http(self.gw.port, build_request(
            method, path, [*headers, ("Connection", "close")], body))
        resp, rest = harness.parse_http_response(data, method)
        self.assertEqual(rest, b"", "stray bytes after the response")
        return resp

    def assertFile(self, r, url_path, what=""):
        self.assertEqual(r.status, 200, f"{what}: {r}")
        self.assertBytesEqual(r.body, self.tree.files[url_path], what)
        self.assertEqual(r.header_all("Content-Length"), [str(len(self.tree.files[url_path]))])
        self.assertEqual(wire_leaks(r.headers), [])


class ErrorTest(PathBase):

    def test_missing_is_404(self):
        for path in ("/missing.txt", "/nar/missing.nar", "/no/such/dir/", "/small.txt/",
                     "/small.txt/x", "/d/missing.html"):
            with self.subTest(path=path):
                r = self.get(path)
                self.assertEqual(r.status, 404, r)
                self.assertBytesEqual(r.body, NOT_FOUND)
                self.assertEqual(r.header("Content-Type"), "text/plain; charset=utf-8")
                self.assertEqual(r.header_all("Content-Length"), [str(len(NOT_FOUND))])
                self.assertEqual(wire_leaks(r.headers), [])

    def test_other_methods_are_405(self):
        for method, body in (("POST", None), ("POST", b"a=1&b=2"), ("PUT", b"x" * 1000),
                             ("DELETE", None), ("DELETE", b"gone"), ("PATCH", b"{}"),
                             ("OPTIONS", None)):
            with self.subTest(method=method, body=body is not None):
                r = self.get("/small.txt", method=method, body=body)
                self.assertEqual(r.status, 405, r)
                self.assertEqual(r.header_all("Allow"), ["GET, HEAD"])
                self.assertBytesEqual(r.body, NOT_ALLOWED)
                self.assertEqual(wire_leaks(r.headers), [])

    def test_405_with_large_bodies_keeps_the_connection_sane(self):
        # 2 MiB is larger than one NATS message (max_payload 1 MiB): the chunked
        # handshake path. After the 405 the connection either serves the next
        # request correctly or was announced closed and is closed.
        body = bytes(range(256)) * (2 * 1024 * 1024 // 256)
        chunked = b"".join(b"%x\r\n" % 65536 + body[i:i + 65536] + b"\r\n"
                           for i in range(0, len(body), 65536)) + b"0\r\n\r\n"
        requests = [
            ("PUT", build_request("PUT", "/upload.bin",
                                  [("Content-Type", "application/octet-stream")], body)),
            ("POST", build_request("POST", "/upload.bin", [], body)),
            ("POST chunked", build_request("POST", "/upload.bin",
                                           [("Transfer-Encoding", "chunked")]) + chunked),
        ]
        for what, data in requests:
            with self.subTest(what=what), Conn(self.gw.port) as c:
                c.send(data)
                r = c.response()
                self.assertEqual(r.status, 405, r)
                self.assertEqual(r.header_all("Allow"), ["GET, HEAD"])
                self.assertBytesEqual(r.body, NOT_ALLOWED)
                if (r.header("Connection") or "").lower() == "close":
                    self.assertTrue(c.at_eof(2), "Connection: close but the connection stayed open")
                else:
                    nxt = c.request("GET", "/small.txt")
                    self.assertFile(nxt, "/small.txt", f"GET after a {what} with a 2 MiB body")


class DirectoryTest(PathBase):

    def test_index_html(self):
        self.assertFile(self.get("/"), "/index.html", "/")
        self.assertFile(self.get("/d/"), "/d/index.html", "/d/")
        self.assertFile(self.get("/sp%20ace/"), "/sp ace/index.html", "/sp%20ace/")
        r = self.get("/d/")
        self.assertEqual(r.header("Content-Type"), "text/html; charset=utf-8")

    def test_directory_without_index_is_404(self):
        r = self.get("/noindex/")
        self.assertEqual(r.status, 404, r)
        self.assertBytesEqual(r.body, NOT_FOUND)

    def test_slash_redirect(self):
        for path, location in (("/d", "/d/"), ("/sp%20ace", "/sp%20ace/"), ("//d", "/d/"),
                               ("/nar", None)):
            with self.subTest(path=path):
                r = self.get(path)
                if location is None:     # /nar has no index.html and there is no --list
                    self.assertEqual(r.status, 404, r)
                    continue
                self.assertEqual(r.status, 301, r)
                self.assertEqual(r.header_all("Location"), [location])
                self.assertEqual(wire_leaks(r.headers), [])

    def test_listing(self):
        nats = harness.Nats(name="nats-list")
        harness.serve(nats, "list", self.tree.root, "--list", name="serve-list")
        gw = harness.gateway(nats, "list", name="gateway-list")
        r = raw_get(gw.port, "/noindex/")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "text/html; charset=utf-8")
        self.assertEqual(r.header_all("Content-Length"), [str(len(r.body))])
        items = re.findall(rb"<li>.*?</li>", r.body)
        self.assertEqual(items, [
            b'<li><a href="../">../</a></li>',
            b'<li><a href="one.txt">one.txt</a></li>',
            b'<li><a href="two%20dir/">two dir/</a></li>',
            b'<li><a href="x%26y.txt">x&amp;y.txt</a></li>',
        ])
        self.assertIn(b"<title>Index of /noindex/</title>", r.body)
        # the entries it links to are served
        self.assertBytesEqual(raw_get(gw.port, "/noindex/x%26y.txt").body, b"x and y\n")
        # a directory with index.html still gets the index, and the redirect applies
        self.assertBytesEqual(raw_get(gw.port, "/d/").body, self.tree.files["/d/index.html"])
        r = raw_get(gw.port, "/noindex")
        self.assertEqual(r.status, 301, r)
        self.assertEqual(r.header_all("Location"), ["/noindex/"])

    def test_listing_larger_than_the_credit_window(self):
        # A listing is a body in memory: it must flow under v2 credit like a
        # file, not end where the 4 MiB window does.
        root = harness.tmpdir("biglist")
        names = [f"entry_{i:05d}_" + "x" * 200 for i in range(11000)]
        for n in names:
            (root / n).write_bytes(b"")
        nats = harness.Nats(name="nats-biglist")
        harness.serve(nats, "big", root, "--list", name="serve-biglist")
        gw = harness.gateway(nats, "big", name="gateway-biglist")
        rc, resp, body, err = curl_get(gw.base + "/")
        self.assertEqual(rc, 0, err)
        self.assertEqual(resp.status, 200, resp)
        self.assertGreater(len(body), 4 * 1024 * 1024)
        self.assertEqual(resp.header_all("Content-Length"), [str(len(body))])
        items = re.findall(rb'<li><a href="([^"]*)">', body)
        self.assertEqual(items, [n.encode() for n in sorted(names)])   # the root has no ../
        self.assertTrue(body.rstrip().endswith(b"</html>"), body[-200:])

class TraversalTest(PathBase):
    """BR-16: nothing outside <tmp>/www is ever served."""

    def assertRefused(self, target, resp):
        self.assertIn(resp.status, (400, 404), f"{target!r}: {resp}")
        self.assertNotIn(self.tree.secret.strip(), resp.body, f"{target!r} leaked the secret")
        self.assertNotIn(passwd_marker(), resp.body, f"{target!r} leaked /etc/passwd")
        self.assertEqual(wire_leaks(resp.headers), [])

    def test_BR16_control_the_secret_is_there(self):
        # the same secret served from the parent directory: proves that the
        # assertions below would see a leak
        nats = harness.Nats(name="nats-parent")
        harness.serve(nats, "parent", self.tree.base, name="serve-parent")
        gw = harness.gateway(nats, "parent", name="gateway-parent")
        r = raw_get(gw.port, "/www-leak/secret.txt")
        self.assertEqual(r.status, 200, r)
        self.assertBytesEqual(r.body, self.tree.secret)
        r = raw_get(gw.port, "/www/link-out.txt")      # inside this root: followed
        self.assertBytesEqual(r.body, self.tree.secret)

    def test_BR16_encoded_dotdot(self):
        for target in ("/%2e%2e/%2e%2e/etc/passwd", "/%2E%2E/%2E%2E/etc/passwd",
                       "/%2e%2e/www-leak/secret.txt", "/sub/%2e%2e/%2e%2e/www-leak/secret.txt"):
            with self.subTest(target=target):
                self.assertRefused(target, self.get(target))

    def test_BR16_encoded_slash(self):
        for target in ("/..%2f..%2fetc%2fpasswd", "/..%2Fwww-leak%2Fsecret.txt",
                       "/sub%2f..%2f..%2fwww-leak%2fsecret.txt"):
            with self.subTest(target=target):
                self.assertRefused(target, self.get(target))

    def test_BR16_double_encoding_is_a_name(self):
        for target in ("/%252e%252e/etc/passwd", "/%252e%252e/www-leak/secret.txt"):
            with self.subTest(target=target):
                r = self.get(target)
                self.assertRefused(target, r)
                self.assertEqual(r.status, 404, r)    # a literal "%2e%2e" directory: not there

    def test_BR16_backslashes(self):
        for target in ("/..%5c..%5cetc%5cpasswd", "/..%5cwww-leak%5csecret.txt",
                       "/..\\www-leak\\secret.txt"):
            with self.subTest(target=target):
                self.assertRefused(target, self.get(target))

    def test_BR16_plain_dotdot_prefix_sibling(self):
        for target in ("/../www-leak/secret.txt", "/sub/../../www-leak/secret.txt", "/..",
                       "/../www-leak/", "../www-leak/secret.txt"):
            with self.subTest(target=target):
                self.assertRefused(target, self.get(target))

    def test_BR16_nul_byte(self):
        for target in ("/index.html%00.png", "/small.txt%00", "/%00/etc/passwd"):
            with self.subTest(target=target):
                self.assertRefused(target, self.get(target))

    def test_BR16_symlinks_leaving_the_root(self):
        for target in ("/link-out.txt", "/link-abs", "/link-dir/secret.txt", "/link-dir/"):
            with self.subTest(target=target):
                self.assertRefused(target, self.get(target))
        # a symlink that stays inside is followed
        self.assertFile(self.get("/link-in.txt"), "/small.txt", "/link-in.txt")

    def test_BR16_dot_segments_stay_inside(self):
        for target in ("/./sub/../index.html", "/sub/./../index.html", "/%2e/index.html"):
            with self.subTest(target=target):
                r = self.get(target)
                if r.status == 200:
                    self.assertBytesEqual(r.body, self.tree.files["/index.html"])
                else:
                    self.assertEqual(r.status, 400, r)
                self.assertNotIn(self.tree.secret.strip(), r.body)

    def test_BR16_refusals_on_one_connection(self):
        # refusals end cleanly: the next request on the connection is served
        with Conn(self.gw.port) as c:
            for target in ("/%2e%2e/%2e%2e/etc/passwd", "/../www-leak/secret.txt",
                           "/link-out.txt", "/index.html%00.png"):
                r = c.request("GET", target)
                self.assertRefused(target, r)
                if (r.header("Connection") or "").lower() == "close":
                    self.assertTrue(c.at_eof(2))
                    c.close()
                    c = Conn(self.gw.port)
                    continue
                self.assertFile(c.request("GET", "/small.txt"), "/small.txt", f"after {target}")
            c.close()


class OddNamesTest(PathBase):
    """Names a v1 subject cannot carry as they are still reach the file."""

    CASES = (
        ("/a%20b.txt", "/a b.txt"),
        ("/star*.txt", "/star*.txt"),
        ("/star%2A.txt", "/star*.txt"),
        ("/gt%3E.txt", "/gt>.txt"),
        ("/100%25.txt", "/100%.txt"),
        ("/caf%C3%A9.txt", "/caf\u00e9.txt"),
        ("/d/", "/d/index.html"),
        ("/d//", "/d/index.html"),
        ("//small.txt", "/small.txt"),
        ("//d//inner.txt", "/d/inner.txt"),
        ("/nar/abc.nar.xz", "/nar/abc.nar.xz"),
        ("/nar/abc.nar.zst", "/nar/abc.nar.zst"),
        ("/abc.narinfo", "/abc.narinfo"),
        ("/small.txt?with=query&x=%2F", "/small.txt"),
    )

    def test_odd_names_raw(self):
        with Conn(self.gw.port) as c:
            for target, path in self.CASES:
                with self.subTest(target=target):
                    self.assertFile(c.request("GET", target), path, target)

    def test_absolute_form_target(self):
        # RFC 9112 3.2.2: "a server MUST accept the absolute-form in requests"
        with Conn(self.gw.port) as c:
            for target, path in (("http://gw.example/small.txt", "/small.txt"),
                                 ("http://gw.example/a%20b.txt?q=1", "/a b.txt")):
                with self.subTest(target=target):
                    r = c.request("GET", target)
                    if (r.header("Connection") or "").lower() == "close":
                        c.close()
                        c = Conn(self.gw.port)
                    self.assertFile(r, path, target)
            c.close()

    def test_odd_names_curl(self):
        for target, path in (("/a%20b.txt", "/a b.txt"), ("/star*.txt", "/star*.txt"),
                             ("/100%25.txt", "/100%.txt"), ("/d/", "/d/index.html"),
                             ("//small.txt", "/small.txt")):
            with self.subTest(target=target):
                rc, resp, body, err = curl_get(self.gw.base + target, "-g")
                self.assertEqual(rc, 0, err)
                self.assertEqual(resp.status, 200)
                self.assertBytesEqual(body, self.tree.files[path])

    def test_subjects_are_literal_and_escaped(self):
        """protocol.md section 1: every such path becomes one literal native subject."""
        listen = peers.natsraw_listen(self.nats, "site.>", ms=20000)
        want = [
            # (target, decoded path, subject)
            ("/", "/", "site.GET.%"),
            ("/d/", "/d/", "site.GET.d.%"),
            ("//small.txt", "//small.txt", "site.GET.%.small%2Etxt"),
            ("/a%20b.txt", "/a b.txt", "site.GET.a%20b%2Etxt"),
            ("/star*.txt", "/star*.txt", "site.GET.star%2A%2Etxt"),
            ("/gt%3E.txt", "/gt>.txt", "site.GET.gt%3E%2Etxt"),
            ("/100%25.txt", "/100%.txt", "site.GET.100%25%2Etxt"),
            ("/caf%C3%A9.txt", "/caf\u00e9.txt", "site.GET.caf%C3%A9%2Etxt"),
            ("/nar/abc.nar.xz", "/nar/abc.nar.xz", "site.GET.nar.abc%2Enar%2Exz"),
        ]
        for target, path, subject in want:
            self.assertEqual(peers.native("site", "GET", path), subject)
            r = self.get(target)
            self.assertEqual(r.status, 200, f"{target}: {r}")
        msgs = harness.wait_until(
            lambda: (lambda m: m if len(m) >= len(want) else None)(peers.listened(listen)),
            10, 0.05, "natsraw saw every request")
        self.assertEqual([m.subject for m in msgs], [s for _, _, s in want])
        # the path rides in the subject only; the raw form when it has escapes
        self.assertEqual([m.header("X-Path") for m in msgs], [None] * len(want))
        self.assertEqual([m.header("Natshttp-Raw-Path") for m in msgs],
                         [None, None, None, "/a%20b.txt", None, "/gt%3E.txt", "/100%25.txt",
                          "/caf%C3%A9.txt", None])


if __name__ == "__main__":
    harness.main()
