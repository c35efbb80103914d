"""curl / raw sockets -> nats-http gateway -> nats-server -> nats-http serve
--upstream -> a real HTTP upstream (upstream_server.py): what the upstream
receives (method, raw path, raw query, headers) and what the client gets back
(status, headers, body), byte for byte. Cases BR-01, BR-03, BR-08 (response
side), BR-10, BR-12, BR-14, BR-26 (c)(d)."""

import hashlib
import random
import urllib.parse

import harness
import upstream_server
from test_upstream_common import (Conn, Upstream, UpstreamStack, curl_full, echo, echoed_headers,
                                  raw_request, upstream_lines, wire_leaks)


class UpstreamBase(harness.E2ETestCase):
    timeout = 30

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.st = UpstreamStack()

    def get(self, method, target, headers=(), body=None, host="gw.example"):
        return raw_request(self.st.port, method, target, headers, body, host)

    def echo_of(self, method, target, headers=(), body=None, host="gw.example"):
        resp = self.get(method, target, headers, body, host)
        self.assertEqual(resp.status, 200, resp)
        return resp, echo(resp.body)


class MethodsTest(UpstreamBase):

    def test_methods_reach_the_upstream_with_their_bodies(self):
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            with self.subTest(method=method):
                body = None if method in ("GET", "DELETE", "OPTIONS") else \
                    f"body of {method}\n".encode()
                resp, e = self.echo_of(method, "/m/" + method.lower(), body=body)
                self.assertEqual(e["method"], method)
                self.assertEqual(e["target"], "/m/" + method.lower())
                self.assertEqual(e["body_length"], len(body or b""))
                self.assertEqual(e["body_sha256"], hashlib.sha256(body or b"").hexdigest())
                self.assertEqual(wire_leaks(resp.headers), [])

    def test_methods_through_curl(self):
        data = random.Random(7).randbytes(50000)
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            with self.subTest(method=method):
                rc, resp, body, err = curl_full(self.st.base + "/c", "-X", method,
                                                "--data-binary", data.hex())
                self.assertEqual(rc, 0, err)
                e = echo(body)
                self.assertEqual(e["method"], method)
                self.assertEqual(e["body_sha256"], hashlib.sha256(data.hex().encode()).hexdigest())
                # the upstream saw curl's framing: one Content-Length, no Expect
                self.assertEqual(echoed_headers(e, "Content-Length"), [str(len(data) * 2)])
                self.assertEqual(echoed_headers(e, "Expect"), [])
                self.assertEqual(echoed_headers(e, "Transfer-Encoding"), [])

    def test_chunked_request_body_goes_upstream_chunked(self):
        data = random.Random(8).randbytes(300000)
        req = (b"POST /chunked-up HTTP/1.1\r\nHost: gw.example\r\nTransfer-Encoding: chunked\r\n"
               b"Connection: close\r\n\r\n")
        for i in range(0, len(data), 70000):
            piece = data[i:i + 70000]
            req += b"%x\r\n" % len(piece) + piece + b"\r\n"
        req += b"0\r\n\r\n"
        resp, _ = harness.parse_http_response(harness.raw_http(self.st.port, req, read_timeout=20))
        self.assertEqual(resp.status, 200, resp)
        e = echo(resp.body)
        self.assertEqual(e["body_length"], len(data))
        self.assertEqual(e["body_sha256"], hashlib.sha256(data).hexdigest())
        self.assertEqual(echoed_headers(e, "Transfer-Encoding"), ["chunked"])
        self.assertEqual(echoed_headers(e, "Content-Length"), [])

    def test_post_without_body_and_empty_body(self):
        resp, e = self.echo_of("POST", "/empty", body=b"")
        self.assertEqual(e["body_length"], 0)
        self.assertEqual(echoed_headers(e, "Content-Length"), ["0"])
        resp, e = self.echo_of("POST", "/none")
        self.assertEqual(e["body_length"], 0)
        self.assertEqual(echoed_headers(e, "Content-Length"), [])

    def test_head_of_echo(self):
        resp = self.get("HEAD", "/h")
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.body, b"")


class PathQueryTest(UpstreamBase):
    """BR-14: the upstream's request-target is byte-identical to the client's."""

    TARGETS = [
        "/api/queues/%2F/tasks",
        "/files/a%20b%2Bc%3Fd%23e%26f",
        "/iiif/2/ST%2F00001%2Fimg.jpg/full/0/default.png",
        "/lower/%2f/%7e/%41",
        "/plus+sign/and;semi=1/@:!$&'()*,",
        "/",
        "/trailing/",
        "/dots/a.b.c",
    ]

    def test_BR14_raw_paths_byte_identical_raw_socket(self):
        for target in self.TARGETS:
            with self.subTest(target=target):
                _, e = self.echo_of("GET", target)
                self.assertEqual(e["target"], target)

    def test_BR14_raw_paths_byte_identical_curl(self):
        for target in self.TARGETS[:4]:
            with self.subTest(target=target):
                rc, resp, body, err = curl_full(self.st.base + target)
                self.assertEqual(rc, 0, err)
                self.assertEqual(echo(body)["target"], target)

    def test_BR14_dot_segments_refused_by_default(self):
        # issue 5: a dot segment could leave the folder a NATS permission names
        # ("site.GET.public.>" would pass /public/../secret), so by default the
        # gateway refuses it before it reaches a subject.
        for target in ("/a/./b/../c", "/a/%2e%2e/c", "/./x", "/x/.."):
            with self.subTest(target=target):
                resp = self.get("GET", target)
                self.assertEqual(resp.status, 400, resp)
                self.assertEqual(resp.body, b"natshttp gateway: path has a . or .. segment\n")
        _, e = self.echo_of("GET", "/after/refusals")
        self.assertEqual(e["target"], "/after/refusals")

    def test_query_untouched(self):
        for q in ("a=1+2", "b=%2B", "c=%20d", "x=1&x=2&y", "sp=a+b%20c%2bd", "e=%", "=&&=",
                  "q=%E2%82%AC"):
            with self.subTest(query=q):
                _, e = self.echo_of("GET", "/q?" + q)
                self.assertEqual(e["target"], "/q?" + q)
                self.assertEqual(e["query"], q)

    def test_path_and_query_together(self):
        target = "/api/queues/%2F/tasks?name=a%2Fb+c&x=%2B"
        _, e = self.echo_of("GET", target)
        self.assertEqual(e["target"], target)


class DotSegmentsPassedTest(UpstreamBase):
    """BR-14 with --allow-dot-segments on gateway and serve: dot segments reach
    the upstream unchanged (for deployments that do not authorize by path)."""

    @classmethod
    def setUpClass(cls):
        harness.E2ETestCase.setUpClass.__func__(cls)
        cls.st = UpstreamStack(serve_args=["--allow-dot-segments"],
                               gateway_args=["--allow-dot-segments"])

    def test_BR14_dot_segments_byte_identical(self):
        for target in ("/a/./b/../c", "/a/%2e%2e/c", "/./x", "/x/.."):
            with self.subTest(target=target):
                _, e = self.echo_of("GET", target)
                self.assertEqual(e["target"], target)
        rc, resp, body, err = curl_full(self.st.base + "/a/./b/../c")
        self.assertEqual(rc, 0, err)
        self.assertEqual(echo(body)["target"], "/a/./b/../c")


class HeadersTest(UpstreamBase):

    def test_repeated_headers_keep_order_case_and_empty_values(self):
        headers = [("X-Repeat", "one"), ("X-Repeat", "two"), ("X-Repeat", "three"),
                   ("Cookie", "a=1"), ("Cookie", "b=2"), ("Accept", "a, b"),
                   ("X-MiXeD-CaSe", "Value With  Spaces"), ("X-Empty", "")]
        _, e = self.echo_of("GET", "/headers", headers)
        self.assertEqual(echoed_headers(e, "X-Repeat"), ["one", "two", "three"])
        self.assertEqual(echoed_headers(e, "Cookie"), ["a=1", "b=2"])
        self.assertEqual(echoed_headers(e, "Accept"), ["a, b"])
        names = [k for k, _ in e["headers"]]
        self.assertIn("X-MiXeD-CaSe", names, e["headers"])
        self.assertEqual(echoed_headers(e, "X-MiXeD-CaSe"), ["Value With  Spaces"])
        self.assertEqual(echoed_headers(e, "X-Empty"), [""], e["headers"])

    def test_host_is_the_clients_and_via_added(self):
        _, e = self.echo_of("GET", "/host", host="www.example.org:8443")
        self.assertEqual(echoed_headers(e, "Host"), ["www.example.org:8443"])
        via = echoed_headers(e, "Via")
        self.assertEqual(len(via), 1, e["headers"])
        # the gateway may add its own entry first; serve's is the last hop
        self.assertRegex(via[0], r"^(1\.1 natshttp-gateway, )?1\.1 natshttp$")

    def test_via_appended_to_an_existing_one(self):
        _, e = self.echo_of("GET", "/via", [("Via", "1.0 fred, 1.1 p.example.net")])
        via = echoed_headers(e, "Via")
        self.assertEqual(len(via), 1, e["headers"])
        self.assertTrue(via[0].startswith("1.0 fred, 1.1 p.example.net, "), via)
        self.assertTrue(via[0].endswith(", 1.1 natshttp"), via)

    def test_curl_defaults_not_added(self):
        # no Accept, no User-Agent from the client: curl adds neither upstream
        _, e = self.echo_of("GET", "/bare")
        self.assertEqual(echoed_headers(e, "Accept"), [])
        self.assertEqual(echoed_headers(e, "User-Agent"), [])
        self.assertEqual(echoed_headers(e, "Accept-Encoding"), [])
        self.assertEqual(echoed_headers(e, "Expect"), [])

    def test_BR10_hop_by_hop_request_fields_stripped(self):
        headers = [("Connection", "Upgrade, HTTP2-Settings, X-Secret"), ("Upgrade", "h2c"),
                   ("HTTP2-Settings", "AAMAAABkAAQAAP__"), ("Keep-Alive", "timeout=5"),
                   ("TE", "trailers"), ("Proxy-Connection", "keep-alive"),
                   ("Proxy-Authorization", "Basic Zm9vOmJhcg=="), ("X-Secret", "s3cr3t"),
                   ("X-Kept", "yes")]
        _, e = self.echo_of("GET", "/hop", headers)
        got = {k.lower() for k, _ in e["headers"]}
        for name in ("connection", "upgrade", "http2-settings", "keep-alive", "te",
                     "proxy-connection", "proxy-authorization", "x-secret", "trailer",
                     "transfer-encoding"):
            self.assertNotIn(name, got, e["headers"])
        self.assertEqual(echoed_headers(e, "X-Kept"), ["yes"])

    def test_BR10_several_connection_headers_all_honoured(self):
        headers = [("Connection", ""), ("Connection", "X-Forwarded-For, X-Drop"), ("X-Drop", "1"),
                   ("X-Keep", "1")]
        _, e = self.echo_of("GET", "/hop2", headers)
        self.assertEqual(echoed_headers(e, "X-Drop"), [])
        self.assertEqual(echoed_headers(e, "Connection"), [])
        self.assertEqual(echoed_headers(e, "X-Keep"), ["1"])
        # naming X-Forwarded-For in Connection does not remove the gateway's own
        self.assertEqual(len(echoed_headers(e, "X-Forwarded-For")), 1, e["headers"])

    def test_BR10_hop_by_hop_response_fields_stripped(self):
        resp = self.get("GET", "/up/hop")
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.body, b"hop")
        self.assertIsNone(resp.header("X-Upstream-Only"), resp.headers)
        self.assertIsNone(resp.header("Proxy-Authenticate"), resp.headers)
        for v in resp.header_all("Keep-Alive"):
            self.assertNotIn("max=100", v, resp.headers)   # the gateway's own, if any
        for v in resp.header_all("Connection"):
            self.assertNotIn("x-upstream-only", v.lower(), resp.headers)
        self.assertEqual(resp.header_all("End-To-End"), ["yes"])

    def test_empty_response_field_reaches_the_client(self):
        # libmicrohttpd refuses an empty value: the gateway sends a lone space
        resp = self.get("GET", "/up/empty-field")
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header_all("X-Empty"), [""], resp.headers)
        self.assertEqual(resp.header_all("X-After"), ["yes"], resp.headers)
        self.assertEqual(resp.body, b"e")

    def test_x_forwarded_added_by_gateway(self):
        _, e = self.echo_of("GET", "/fwd", [("X-Forwarded-For", "192.0.2.1")])
        xff = echoed_headers(e, "X-Forwarded-For")
        self.assertEqual(len(xff), 1, e["headers"])
        self.assertTrue(xff[0].startswith("192.0.2.1, "), xff)
        self.assertTrue(xff[0].endswith("127.0.0.1"), xff)
        self.assertEqual(echoed_headers(e, "X-Forwarded-Proto"), ["http"])
        self.assertEqual(echoed_headers(e, "X-Forwarded-Host"), ["gw.example"])


class ResponsesTest(UpstreamBase):

    def test_statuses_passed_through(self):
        for code, body in ((201, b"created"), (404, b"not here"), (410, b"gone for good"),
                           (500, b"it broke\n"), (418, b"teapot"), (503, b"later")):
            with self.subTest(code=code):
                resp = self.get("GET", f"/up/status/{code}?body={urllib.parse.quote(body)}")
                self.assertEqual(resp.status, code)
                self.assertBytesEqual(resp.body, body)
                self.assertEqual(resp.header_all("Content-Length"), [str(len(body))])

    def test_BR26_c_d_404_410_500_with_bodies_via_curl(self):
        for code in (404, 410, 500):
            with self.subTest(code=code):
                rc, resp, body, err = curl_full(self.st.base + f"/up/status/{code}?body=b{code}")
                self.assertEqual(rc, 0, err)
                self.assertEqual(resp.status, code)
                self.assertEqual(body, f"b{code}".encode())

    def test_301_location_intact(self):
        loc = "https://elsewhere.example/a%2Fb?x=1&y=%20"
        resp = self.get("GET", "/up/status/301?location=" + loc.replace("&", "%26")
                        .replace("?", "%3F").replace("%2F", "%252F").replace("%20", "%2520"))
        self.assertEqual(resp.status, 301)
        self.assertEqual(resp.header_all("Location"), [loc])

    def test_204_no_body(self):
        with Conn(self.st.port) as c:
            resp = c.request("DELETE", "/up/204")
            self.assertEqual(resp.status, 204)
            self.assertEqual(resp.body, b"")
            self.assertEqual(resp.header_all("X-Deleted"), ["7"])
            self.assertEqual(resp.header_all("Content-Length"), [])
            resp = c.request("GET", "/after-204")
            self.assertEqual(echo(resp.body)["target"], "/after-204")

    def test_BR12_three_set_cookies_byte_identical_in_order(self):
        resp = self.get("GET", "/up/cookies")
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header_all("Set-Cookie"), upstream_server.COOKIES)
        self.assertEqual(resp.body, b"ok")
        rc, cresp, body, err = curl_full(self.st.base + "/up/cookies")
        self.assertEqual(rc, 0, err)
        self.assertEqual(cresp.header_all("Set-Cookie"), upstream_server.COOKIES)

    def test_gzip_passed_through_untouched(self):
        resp = self.get("GET", "/up/gzip", [("Accept-Encoding", "gzip")])
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header_all("Content-Encoding"), ["gzip"])
        self.assertBytesEqual(resp.body, upstream_server.GZIP_BODY)
        rc, cresp, body, err = curl_full(self.st.base + "/up/gzip")   # no --compressed
        self.assertEqual(rc, 0, err)
        self.assertBytesEqual(body, upstream_server.GZIP_BODY)

    def test_reason_phrase_kept(self):
        # on the NATS wire (nats-http request prints it); the gateway's
        # libmicrohttpd writes its own phrase, but the status survives
        rc, out, err = harness.request(self.st.nats, "-i",
                                       "nats+http://up/up/status/299?reason=Very%20Custom&body=x")
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.startswith(b"HTTP/1.1 299 Very Custom\r\n"), out[:100])
        self.assertTrue(out.endswith(b"\r\n\r\nx"), out[-50:])
        resp = self.get("GET", "/up/status/299?reason=Very%20Custom&body=x")
        self.assertEqual(resp.status, 299)
        self.assertEqual(resp.body, b"x")

    def test_close_delimited_response_arrives_whole(self):
        size = 3_000_000
        rc, resp, body, err = curl_full(self.st.base + f"/up/close-delimited?size={size}")
        self.assertEqual(rc, 0, err)
        self.assertEqual(resp.status, 200)
        self.assertEqual(len(body), size)
        self.assertEqual(hashlib.sha256(body).hexdigest(), upstream_server.download_sha256(size))

    def test_chunked_response_whole(self):
        rc, resp, body, err = curl_full(self.st.base + "/up/chunked?n=40&size=50000")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(body), 40 * 50000)
        self.assertEqual(body[:3], b"AAA")

    def test_BR08_response_differing_content_lengths_502(self):
        since = self.st.serve.log_size()
        resp = self.get("GET", "/up/dup-cl")
        self.assertEqual(resp.status, 502, resp)
        self.assertNotIn(b"abc", resp.body)
        lines = upstream_lines(self.st.serve, since)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("GET /up/dup-cl", lines[0])
        # and the next request is fine
        _, e = self.echo_of("GET", "/after-dup-cl")
        self.assertEqual(e["target"], "/after-dup-cl")


class BodilessTest(UpstreamBase):
    """BR-01 and BR-03: HEAD, 204 and 304 end at the head."""

    def test_BR01_head_keeps_content_length_no_body_then_get(self):
        with Conn(self.st.port) as c:
            resp = c.request("HEAD", "/up/file.bin")
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.header_all("Content-Length"), ["1192"])
            self.assertEqual(resp.header_all("Accept-Ranges"), ["bytes"])
            self.assertEqual(resp.header_all("Content-Type"), ["application/octet-stream"])
            self.assertEqual(resp.body, b"")
            resp = c.request("GET", "/up/file.bin")
            self.assertEqual(resp.status, 200)
            self.assertEqual(len(resp.body), 1192)

    def test_BR01_head_via_curl_returns_at_once(self):
        rc, resp, body, err = curl_full(self.st.base + "/up/file.bin", "-I", max_time=5)
        self.assertEqual(rc, 0, err)
        self.assertEqual(resp.header_all("Content-Length"), ["1192"])

    def test_BR03_304_and_204_then_next_request_on_the_connection(self):
        with Conn(self.st.port) as c:
            resp = c.request("GET", "/up/304", [("If-None-Match", '"v1"')])
            self.assertEqual(resp.status, 304)
            self.assertEqual(resp.header_all("ETag"), ['"v1"'])
            self.assertEqual(resp.body, b"")
            resp = c.request("DELETE", "/up/204")
            self.assertEqual(resp.status, 204)
            resp = c.request("GET", "/next")
            self.assertEqual(resp.status, 200)
            self.assertEqual(echo(resp.body)["target"], "/next")

    def test_BR03_stray_bytes_after_304_never_leak(self):
        with Conn(self.st.port) as c:
            for i in range(5):
                resp = c.request("GET", "/up/304?stray=1", [("If-None-Match", '"v1"')])
                self.assertEqual(resp.status, 304)
                self.assertEqual(resp.body, b"")
                resp = c.request("GET", f"/after-stray-{i}")
                self.assertEqual(resp.status, 200, resp)
                self.assertNotIn(b"hello", resp.body)
                self.assertEqual(echo(resp.body)["target"], f"/after-stray-{i}")
            self.assertFalse(c.buf, c.buf)


class OptionsTest(harness.E2ETestCase):
    timeout = 30

    def test_upstream_host_option(self):
        st = UpstreamStack(serve_args=["--upstream-host", "internal.example:81"])
        e = echo(raw_request(st.port, "GET", "/h", host="public.example").body)
        self.assertEqual(echoed_headers(e, "Host"), ["internal.example:81"])

    def test_base_path(self):
        up = Upstream()
        st = UpstreamStack(upstream=up, url=up.base + "/base/")
        e = echo(raw_request(st.port, "GET", "/x/%2F?q=1").body)
        self.assertEqual(e["target"], "/base/x/%2F?q=1")
        e = echo(raw_request(st.port, "GET", "/").body)
        self.assertEqual(e["target"], "/base/")

    def test_connections_reused(self):
        st = UpstreamStack(serve_args=["--upstream-max-conns", "2"])
        before = st.upstream.stats()["connections"]
        for i in range(30):
            resp = raw_request(st.port, "GET", f"/reuse/{i}")
            self.assertEqual(resp.status, 200)
        used = st.upstream.stats()["connections"] - before - 1   # not the stats call
        self.assertLessEqual(used, 2, f"{used} upstream connections for 30 sequential requests")

    def test_usage_errors(self):
        for args, text in ((["--subject", "s"], "exactly one of --dir and --upstream"),
                           (["--subject", "s", "--dir", "/tmp", "--upstream", "http://x"],
                            "exactly one"),
                           (["--subject", "s", "--upstream", "http://x", "--upstream-timeout",
                             "0"], "--upstream-timeout")):
            with self.subTest(args=args):
                rc, _, err = harness.nats_http("serve", *args)
                self.assertEqual(rc, 2, err)
                self.assertIn(text, err)

    def test_bad_upstream_url_refused(self):
        nats = harness.Nats()
        for url in ("ftp://127.0.0.1/", "http://127.0.0.1:1/?q=1", "not a url"):
            with self.subTest(url=url):
                rc, _, err = harness.nats_http("serve", "--subject", "s", "--upstream", url,
                                               "--server", nats.url, timeout=20)
                self.assertEqual(rc, 1, err)
                self.assertIn("upstream", err)


if __name__ == "__main__":
    harness.main()
