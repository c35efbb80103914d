"""Static files through curl / raw sockets -> nats-http gateway -> nats-server
-> nats-http serve --dir: GET, HEAD (BR-01), conditionals (BR-03), ranges
(BR-17) and content types, with exact bytes and header values."""

import os
import time

import harness
import peers
import test_static_common as common
from test_static_common import (IMF_FIXDATE, MTIME, MTIME_TEXT, Conn, curl_get, http_date,
                                make_tree, raw_get, wire_leaks)


class StaticBase(common.StaticBase):

    def assertNoWire(self, resp, what=""):
        self.assertEqual(wire_leaks(resp.headers), [], f"wire headers reached the client {what}: "
                                                       f"{resp.headers}")

    def assertOnce(self, resp, name, value):
        """Header `name` is present exactly once with exactly `value`."""
        self.assertEqual(resp.header_all(name), [value], f"{name} in {resp.headers}")

    def get(self, path, headers=(), method="GET"):
        return raw_get(self.gw.port, path, headers, method)


class GetTest(StaticBase):

    def test_small_file_with_curl(self):
        data = self.tree.files["/small.txt"]
        rc, resp, body, err = curl_get(self.gw.base + "/small.txt")
        self.assertEqual(rc, 0, err)
        self.assertEqual(resp.status, 200)
        self.assertBytesEqual(body, data)
        self.assertOnce(resp, "Content-Type", "text/plain; charset=utf-8")
        self.assertOnce(resp, "Content-Length", str(len(data)))
        self.assertOnce(resp, "Accept-Ranges", "bytes")
        self.assertOnce(resp, "Last-Modified", MTIME_TEXT)
        self.assertEqual(len(resp.header_all("ETag")), 1, resp.headers)
        self.assertRegex(resp.header("ETag"), r'^"[\x21\x23-\x7e]+"$')
        self.assertNoWire(resp, "(200 via curl)")

    def test_validators_well_formed_and_stable(self):
        # a file with the current mtime: Last-Modified is that time, exactly
        self.tree.add("fresh.txt", b"fresh\n", mtime=None)
        mtime = os.stat(self.tree.path("/fresh.txt")).st_mtime
        a = self.get("/fresh.txt")
        b = self.get("/fresh.txt")
        self.assertEqual(a.status, 200)
        self.assertBytesEqual(a.body, b"fresh\n")
        self.assertRegex(a.header("Last-Modified"), IMF_FIXDATE)
        self.assertEqual(a.header("Last-Modified"), http_date(int(mtime)))
        self.assertTrue(self.tree.etag_shape_ok(a.header("ETag")), a.headers)
        self.assertEqual(a.header("ETag"), b.header("ETag"))
        other = self.get("/small.txt")
        self.assertNotEqual(a.header("ETag"), other.header("ETag"))
        # a changed file gets a new ETag
        self.tree.add("fresh.txt", b"fresh, longer\n", mtime=None)
        c = self.get("/fresh.txt")
        self.assertBytesEqual(c.body, b"fresh, longer\n")
        self.assertNotEqual(c.header("ETag"), a.header("ETag"))

    def test_empty_file(self):
        r = self.get("/empty.txt")
        self.assertEqual(r.status, 200)
        self.assertOnce(r, "Content-Length", "0")
        self.assertBytesEqual(r.body, b"")
        self.assertNoWire(r)

    def test_no_wire_headers_on_any_answer(self):
        etag = self.get("/small.txt").header("ETag")
        cases = [
            ("GET", "/small.txt?x=1", (), 200),
            ("HEAD", "/small.txt", (), 200),
            ("GET", "/small.txt", (("If-None-Match", etag),), 304),
            ("GET", "/big.nar", (("Range", "bytes=0-9"),), 206),
            ("GET", "/big.nar", (("Range", "bytes=9999-"),), 416),
            ("GET", "/missing.txt", (), 404),
            ("GET", "/d", (), 301),
            ("DELETE", "/small.txt", (), 405),
            ("GET", "/%2e%2e/x", (), 400),
            # a client that sends the wire's own names gets them neither
            # forwarded nor echoed
            ("GET", "/small.txt", (("X-Path", "/big.nar"), ("X-Status-Code", "500"),
                                   ("Natshttp-Raw-Path", "/big.nar")), 200),
        ]
        for method, path, headers, status in cases:
            with self.subTest(method=method, path=path):
                r = self.get(path, headers, method)
                self.assertEqual(r.status, status, r)
                self.assertNoWire(r, f"({method} {path} -> {r.status})")
        # the last case still served small.txt, not what X-Path asked for
        r = self.get("/small.txt", (("X-Path", "/big.nar"),))
        self.assertBytesEqual(r.body, self.tree.files["/small.txt"])
        # curl on an error answer too
        rc, resp, body, err = curl_get(self.gw.base + "/missing.txt")
        self.assertEqual(rc, 0, err)
        self.assertEqual(resp.status, 404)
        self.assertBytesEqual(body, b"404 Not Found\n")
        self.assertNoWire(resp, "(404 via curl)")

    def test_content_types(self):
        want = {
            "/abc.narinfo": "text/x-nix-narinfo",
            "/nix-cache-info": "text/x-nix-cache-info",
            "/nar/abc.nar": "application/octet-stream",
            "/nar/abc.nar.xz": "application/octet-stream",
            "/nar/abc.nar.zst": "application/octet-stream",
            "/page.html": "text/html; charset=utf-8",
            "/index.html": "text/html; charset=utf-8",
            "/small.txt": "text/plain; charset=utf-8",
            "/file.bin": "application/octet-stream",
        }
        for path, ctype in want.items():
            with self.subTest(path=path):
                rc, resp, body, err = curl_get(self.gw.base + path)
                self.assertEqual(rc, 0, err)
                self.assertEqual(resp.status, 200)
                self.assertOnce(resp, "Content-Type", ctype)
                self.assertBytesEqual(body, self.tree.files[path])


class HeadTest(StaticBase):

    def test_BR01_head_same_headers_as_get_no_body(self):
        get = self.get("/file.bin")
        self.assertEqual(get.status, 200)
        self.assertBytesEqual(get.body, self.tree.files["/file.bin"])
        with Conn(self.gw.port) as c:
            t0 = time.monotonic()
            head = c.request("HEAD", "/file.bin")
            elapsed = time.monotonic() - t0
            self.assertEqual(head.status, 200)
            self.assertOnce(head, "Content-Length", "1192")
            self.assertOnce(head, "Accept-Ranges", "bytes")
            self.assertOnce(head, "Content-Type", "application/octet-stream")
            self.assertLess(elapsed, 2.0, "HEAD was not answered at once")
            skip = {"date", "connection", "keep-alive"}
            self.assertEqual(sorted((k.lower(), v) for k, v in head.headers if k.lower() not in skip),
                             sorted((k.lower(), v) for k, v in get.headers if k.lower() not in skip))
            self.assertNoWire(head)
            # the next request on the same connection: no stray body bytes before it
            nxt = c.request("GET", "/small.txt")
            self.assertEqual(nxt.status, 200)
            self.assertBytesEqual(nxt.body, self.tree.files["/small.txt"])
            self.assertOnce(nxt, "Content-Length", str(len(self.tree.files["/small.txt"])))
            self.assertEqual(c.buf, b"")

    def test_BR01_head_then_get_pipelined(self):
        data = harness.raw_http(self.gw.port, [
            b"HEAD /file.bin HTTP/1.1\r\nHost: gw.example\r\n\r\n"
            b"GET /small.txt HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n"])
        rs = harness.parse_http_responses(data, ["HEAD", "GET"])
        self.assertEqual([r.status for r in rs], [200, 200], rs)
        self.assertOnce(rs[0], "Content-Length", "1192")
        self.assertOnce(rs[0], "Accept-Ranges", "bytes")
        self.assertBytesEqual(rs[1].body, self.tree.files["/small.txt"])

    def test_BR01_head_large_and_empty(self):
        r = self.get("/big.nar", method="HEAD")
        self.assertEqual(r.status, 200)
        self.assertOnce(r, "Content-Length", "5882")
        self.assertOnce(r, "Accept-Ranges", "bytes")
        r = self.get("/empty.txt", method="HEAD")
        self.assertEqual(r.status, 200)
        self.assertOnce(r, "Content-Length", "0")

    def test_BR01_head_of_missing_file(self):
        with Conn(self.gw.port) as c:
            r = c.request("HEAD", "/missing.txt")
            self.assertEqual(r.status, 404)
            self.assertOnce(r, "Content-Length", str(len(b"404 Not Found\n")))
            nxt = c.request("GET", "/small.txt")
            self.assertEqual(nxt.status, 200)
            self.assertBytesEqual(nxt.body, self.tree.files["/small.txt"])


class ConditionalTest(StaticBase):

    def test_BR03_if_none_match_304_ends_at_head(self):
        first = self.get("/small.txt")
        etag = first.header("ETag")
        with Conn(self.gw.port) as c:
            t0 = time.monotonic()
            r = c.request("GET", "/small.txt", [("If-None-Match", etag)])
            self.assertLess(time.monotonic() - t0, 2.0, "304 not delivered at once")
            self.assertEqual(r.status, 304)
            self.assertBytesEqual(r.body, b"")
            self.assertOnce(r, "ETag", etag)
            self.assertOnce(r, "Last-Modified", MTIME_TEXT)
            self.assertEqual(r.header("Transfer-Encoding"), None, r.headers)
            # RFC 9110 8.6: a 304 carries no Content-Length, or the one a 200 would have
            self.assertIn(r.header_all("Content-Length"), ([], [str(len(first.body))]),
                          f"304 with a wrong Content-Length: {r.headers}")
            self.assertNoWire(r)
            # the next answer on the connection is intact
            nxt = c.request("GET", "/file.bin")
            self.assertEqual(nxt.status, 200)
            self.assertBytesEqual(nxt.body, self.tree.files["/file.bin"])
            self.assertEqual(c.buf, b"")

    def test_BR03_if_none_match_variants(self):
        etag = self.get("/small.txt").header("ETag")
        data = self.tree.files["/small.txt"]
        cases = [
            ('"not-the-etag"', 200),
            ("*", 304),
            (f'"x", {etag}', 304),
            (f"W/{etag}", 304),                # weak comparison for If-None-Match
            ('"x", "y"', 200),
        ]
        with Conn(self.gw.port) as c:
            for value, status in cases:
                with self.subTest(inm=value):
                    r = c.request("GET", "/small.txt", [("If-None-Match", value)])
                    self.assertEqual(r.status, status, r)
                    self.assertBytesEqual(r.body, data if status == 200 else b"")
            # HEAD with a matching tag
            r = c.request("HEAD", "/small.txt", [("If-None-Match", etag)])
            self.assertEqual(r.status, 304)
            r = c.request("GET", "/small.txt")
            self.assertBytesEqual(r.body, data)

    def test_BR03_if_modified_since(self):
        data = self.tree.files["/small.txt"]
        later = http_date(MTIME + 3600)
        earlier = http_date(MTIME - 3600)
        with Conn(self.gw.port) as c:
            r = c.request("GET", "/small.txt", [("If-Modified-Since", later)])
            self.assertEqual(r.status, 304)
            self.assertBytesEqual(r.body, b"")
            r = c.request("GET", "/small.txt", [("If-Modified-Since", MTIME_TEXT)])
            self.assertEqual(r.status, 304)
            r = c.request("GET", "/small.txt", [("If-Modified-Since", earlier)])
            self.assertEqual(r.status, 200)
            self.assertBytesEqual(r.body, data)
            # If-None-Match takes precedence over If-Modified-Since (RFC 9110 13.1.3)
            r = c.request("GET", "/small.txt", [("If-None-Match", '"other"'),
                                                ("If-Modified-Since", later)])
            self.assertEqual(r.status, 200)
            self.assertBytesEqual(r.body, data)
            # an invalid date is ignored
            r = c.request("GET", "/small.txt", [("If-Modified-Since", "yesterday")])
            self.assertEqual(r.status, 200)
            self.assertBytesEqual(r.body, data)


class RangeTest(StaticBase):
    N = 5882

    def setUp(self):
        self.data = self.tree.files["/big.nar"]
        self.assertEqual(len(self.data), self.N)

    def rng(self, value, extra=()):
        return self.get("/big.nar", [("Range", value), *extra])

    def assertPartial(self, r, first, last):
        self.assertEqual(r.status, 206, r)
        self.assertOnce(r, "Content-Range", f"bytes {first}-{last}/{self.N}")
        self.assertOnce(r, "Content-Length", str(last - first + 1))
        self.assertBytesEqual(r.body, self.data[first:last + 1])
        self.assertNoWire(r)

    def assertFull(self, r):
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header_all("Content-Range"), [])
        self.assertOnce(r, "Content-Length", str(self.N))
        self.assertBytesEqual(r.body, self.data)

    def test_BR17_bounded_range(self):
        self.assertPartial(self.rng("bytes=100-199"), 100, 199)

    def test_BR17_open_range(self):
        r = self.rng("bytes=2000-")
        self.assertPartial(r, 2000, 5881)
        self.assertEqual(len(r.body), 3882)

    def test_BR17_suffix_range(self):
        self.assertPartial(self.rng("bytes=-100"), 5782, 5881)

    def test_BR17_range_past_end_is_clipped(self):
        self.assertPartial(self.rng("bytes=5800-9999"), 5800, 5881)

    def test_BR17_unsatisfiable(self):
        r = self.rng("bytes=9999-")
        self.assertEqual(r.status, 416, r)
        self.assertOnce(r, "Content-Range", "bytes */5882")
        self.assertNoWire(r)
        r = self.rng("bytes=5882-")
        self.assertEqual(r.status, 416, r)
        self.assertOnce(r, "Content-Range", "bytes */5882")

    def test_BR17_multi_range_gives_full_body(self):
        self.assertFull(self.rng("bytes=0-0,10-20"))

    def test_BR17_if_range_stale_etag_gives_full_body(self):
        self.assertFull(self.rng("bytes=100-199", [("If-Range", '"stale-etag"')]))

    def test_BR17_if_range_matching(self):
        etag = self.get("/big.nar").header("ETag")
        self.assertPartial(self.rng("bytes=100-199", [("If-Range", etag)]), 100, 199)
        self.assertPartial(self.rng("bytes=100-199", [("If-Range", MTIME_TEXT)]), 100, 199)
        self.assertFull(self.rng("bytes=100-199", [("If-Range", http_date(MTIME - 1))]))
        self.assertFull(self.rng("bytes=100-199", [("If-Range", f"W/{etag}")]))

    def test_BR17_head_advertises_ranges(self):
        r = self.get("/big.nar", method="HEAD")
        self.assertEqual(r.status, 200)
        self.assertOnce(r, "Accept-Ranges", "bytes")
        self.assertOnce(r, "Content-Length", "5882")
        self.assertBytesEqual(r.body, b"")

    def test_BR17_ranges_on_one_connection_and_curl(self):
        with Conn(self.gw.port) as c:
            for first, last in ((0, 0), (1, 4095), (4096, 5881), (5881, 5881)):
                r = c.request("GET", "/big.nar", [("Range", f"bytes={first}-{last}")])
                self.assertPartial(r, first, last)
            r = c.request("GET", "/big.nar", [("Range", "bytes=9999-")])
            self.assertEqual(r.status, 416)
            r = c.request("GET", "/big.nar")
            self.assertFull(r)
        # curl's resume (-C) uses "Range: bytes=N-"
        out = harness.tmpdir("resume") / "big.nar"
        out.write_bytes(self.data[:1000])
        rc, _, err = harness.curl("-C", "-", "-o", out, self.gw.base + "/big.nar")
        self.assertEqual(rc, 0, err)
        self.assertEqual(harness.sha256_file(out), harness.sha256_bytes(self.data))


class OneMessageBoundaryTest(harness.E2ETestCase):
    """Whether a response is one message or several is decided by the server
    and read back by the client from the same rule (protocol.md; wire-v1:
    subject, reply and header block plus Content-Length against max payload).
    Every body size across that boundary arrives whole, in both protocols."""
    timeout = 120
    MAX_PAYLOAD = 8192

    def check(self, *gateway_args):
        nats = harness.Nats(f"max_payload: {self.MAX_PAYLOAD}")
        root = harness.tmpdir("boundary")
        data = os.urandom(16384)
        (root / "f.bin").write_bytes(data)
        harness.serve(nats, "edge", root)
        gw = harness.gateway(nats, "edge", *gateway_args)
        bad = []
        with peers.Conn(gw.port) as c:
            for n in range(self.MAX_PAYLOAD - 800, self.MAX_PAYLOAD + 64):
                resp = c.request("GET", "/f.bin", [("Range", f"bytes=0-{n - 1}")])
                if resp.status != 206 or resp.body != data[:n]:
                    bad.append((n, resp.status, len(resp.body)))
        self.assertEqual(bad, [], f"{len(bad)} sizes answered wrongly")

    def test_v2(self):
        self.check()

    def test_v1(self):
        self.check("--protocol", "1")


if __name__ == "__main__":
    harness.main()
