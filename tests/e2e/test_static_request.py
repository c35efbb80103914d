"""`nats-http request` against `nats-http serve --dir` directly (no gateway):
body bytes, -o, -i, exit statuses, ranges, and its usage errors."""

import time

import harness
from test_static_common import make_tree, rand_bytes, wire_leaks

NOT_FOUND = b"404 Not Found\n"


class RequestTest(harness.E2ETestCase):
    timeout = 30

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tree = make_tree(harness.tmpdir("tree"))
        cls.big = cls.tree.add("five.bin", rand_bytes(5 * 1024 * 1024, 55))
        cls.nats = harness.Nats()
        cls.serve = harness.serve(cls.nats, "site", cls.tree.root)

    def req(self, *args):
        return harness.request(self.nats, *args)

    def test_body_bytes(self):
        for path in ("/small.txt", "/file.bin", "/index.html", "/empty.txt", "/a%20b.txt",
                     "/nar/abc.nar.xz"):
            with self.subTest(path=path):
                rc, out, err = self.req(f"nats+http://site{path}")
                self.assertEqual(rc, 0, err)
                self.assertBytesEqual(out, self.tree.files[path.replace("%20", " ")])
        rc, out, err = self.req("nats+http://site")          # no path: "/"
        self.assertEqual(rc, 0, err)
        self.assertBytesEqual(out, self.tree.files["/index.html"])

    def test_output_file_5mib(self):
        dest = harness.tmpdir("out") / "five.bin"
        rc, out, err = self.req("-o", dest, "nats+http://site/five.bin")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, b"")
        self.assertEqual(dest.stat().st_size, len(self.big))
        self.assertEqual(harness.sha256_file(dest), harness.sha256_bytes(self.big))

    def test_server_killed_mid_body_exit_18(self):
        # The body broke off after the head: 18 (as curl), whatever the cause
        # (here: no piece for --idle-timeout after serve died).
        root = harness.tmpdir("tree-kill")
        with open(root / "big.bin", "wb") as f:    # 4 GiB, sparse: long enough to cut
            f.truncate(4 << 30)
        serve = harness.serve(self.nats, "killme", root, "--window", "1048576",
                              name="serve-killme")
        dest = harness.tmpdir("out-kill") / "big.bin"
        p = harness.Proc([harness.BIN, "request", "--idle-timeout", "2", "--window", "1048576",
                          "-o", dest, "nats+http://killme/big.bin"], name="request-killme",
                         ready=None, env={"NATS_URL": self.nats.url})
        harness.wait_until(lambda: dest.exists() and dest.stat().st_size > 0, 20, 0.01,
                           "the first body bytes")
        serve.kill()
        self.assertEqual(p.wait(30), 18, p.log_text())
        self.assertLess(dest.stat().st_size, 4 << 30)
        self.assertIn("nats-http request: transfer made no progress within the idle timeout",
                      p.log_text())

    def test_include_prints_status_and_headers(self):
        rc, out, err = self.req("-i", "nats+http://site/file.bin")
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.startswith(b"HTTP/1.1 200 OK\r\n"), out[:200])
        resp, rest = harness.parse_http_response(out)
        self.assertEqual(rest, b"")
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header_all("Content-Length"), ["1192"])
        self.assertEqual(resp.header_all("Content-Type"), ["application/octet-stream"])
        self.assertEqual(resp.header_all("Accept-Ranges"), ["bytes"])
        self.assertTrue(self.tree.etag_shape_ok(resp.header("ETag")), resp.headers)
        self.assertEqual(wire_leaks(resp.headers), [])
        self.assertBytesEqual(resp.body, self.tree.files["/file.bin"])

    def test_head_with_include(self):
        rc, out, err = self.req("-i", "-X", "HEAD", "nats+http://site/file.bin")
        self.assertEqual(rc, 0, err)
        resp, rest = harness.parse_http_response(out, "HEAD")
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header_all("Content-Length"), ["1192"])
        self.assertEqual(rest, b"")           # no body bytes after the head

    def test_404_exit_22_with_body(self):
        rc, out, err = self.req("nats+http://site/missing.txt")
        self.assertEqual(rc, 22, err)
        self.assertBytesEqual(out, NOT_FOUND)
        rc, out, err = self.req("-i", "nats+http://site/missing.txt")
        self.assertEqual(rc, 22, err)
        resp, rest = harness.parse_http_response(out)
        self.assertEqual((resp.status, resp.reason), (404, "Not Found"))
        self.assertBytesEqual(resp.body, NOT_FOUND)
        self.assertEqual(wire_leaks(resp.headers), [])

    def test_405_exit_22(self):
        rc, out, err = self.req("-d", "some body", "nats+http://site/small.txt")
        self.assertEqual(rc, 22, err)
        self.assertBytesEqual(out, b"405 Method Not Allowed\n")
        rc, out, err = self.req("-i", "-X", "DELETE", "nats+http://site/small.txt")
        self.assertEqual(rc, 22, err)
        resp, _ = harness.parse_http_response(out)
        self.assertEqual(resp.status, 405)
        self.assertEqual(resp.header_all("Allow"), ["GET, HEAD"])

    def test_range_header(self):
        data = self.tree.files["/big.nar"]
        rc, out, err = self.req("-H", "Range: bytes=0-9", "nats+http://site/big.nar")
        self.assertEqual(rc, 0, err)
        self.assertBytesEqual(out, data[:10])
        rc, out, err = self.req("-i", "-H", "Range: bytes=-100", "nats+http://site/big.nar")
        self.assertEqual(rc, 0, err)
        resp, _ = harness.parse_http_response(out)
        self.assertEqual(resp.status, 206)
        self.assertEqual(resp.header_all("Content-Range"), ["bytes 5782-5881/5882"])
        self.assertBytesEqual(resp.body, data[-100:])
        rc, out, err = self.req("-i", "-H", "Range: bytes=9999-", "nats+http://site/big.nar")
        self.assertEqual(rc, 22, err)
        resp, _ = harness.parse_http_response(out)
        self.assertEqual(resp.status, 416)
        self.assertEqual(resp.header_all("Content-Range"), ["bytes */5882"])

    def test_not_modified_exit_0(self):
        rc, out, err = self.req("-i", "-H", "If-None-Match: *", "nats+http://site/small.txt")
        self.assertEqual(rc, 0, err)
        resp, rest = harness.parse_http_response(out)
        self.assertEqual((resp.status, resp.reason), (304, "Not Modified"))
        self.assertEqual(rest, b"")

    def test_no_responders_fails_at_once(self):
        t0 = time.monotonic()
        rc, out, err = self.req("nats+http://nobody/small.txt")
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 1, err)
        self.assertEqual(out, b"")
        self.assertLess(elapsed, 5, "no responders should not wait for the 30 s timeout")
        self.assertEqual(len(err.splitlines()), 1, err)

    def test_usage_errors_exit_2(self):
        for args in ((), ("http://site/small.txt",), ("--no-such-option", "nats+http://site/x"),
                     ("nats+http://site/a", "nats+http://site/b"), ("-H", "NoColon",
                                                                    "nats+http://site/x")):
            with self.subTest(args=args):
                rc, out, err = self.req(*args)
                self.assertEqual(rc, 2, err)
                self.assertEqual(out, b"")
                self.assertEqual(len(err.splitlines()), 1, repr(err))
                self.assertTrue(err.startswith("nats-http request: "), repr(err))
                self.assertTrue(err.endswith("\n"), repr(err))

    def test_help(self):
        rc, out, err = self.req("--help")
        self.assertEqual(rc, 0, err)
        text = out.decode()
        self.assertRegex(text, r"(?m)^usage: nats-http request ")
        self.assertRegex(text, r"(?m)^\s+--server URL")
        self.assertRegex(text, r"(?m)^\s+-o, --output FILE")


if __name__ == "__main__":
    harness.main()
