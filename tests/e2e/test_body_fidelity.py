"""Request and response fidelity through the gateway: paths, queries and
header fields reach echo_responder exactly as the client sent them, minus the
hop-by-hop fields and the wire's own names; Set-Cookie lines from the NATS
side reach the client separate and unchanged (BR-10 request side, BR-12).

    raw socket / curl -> nats-http gateway -> nats-server -> echo_responder | natsraw reply
"""

import harness
import peers


class RequestFidelityTest(harness.E2ETestCase):
    timeout = 30
    gateway_args: tuple = ()     # default: v2 with peers that speak it

    def setUp(self):
        self.nats, self.echo, self.gw = peers.echo_stack("subj", *self.gateway_args)
        self.listen = peers.natsraw_listen(self.nats, "subj.>", ms=25000)

    def ask(self, request: bytes, method: str = "GET") -> dict:
        resp, extra = peers.exchange(self.gw.port, request, method)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(extra, b"")
        got = peers.echo_json(resp.body)
        self.assertEqual(resp.header("X-Body-Sha256"), got["sha256"])
        return got

    def subjects(self) -> list[str]:
        return [m.subject for m in peers.listened(self.listen)]

    def test_raw_path_and_query_byte_for_byte(self):
        got = self.ask(b"GET /a%2Fb/c%20d+e/%c3%a9/x.y?a=1&b=%2B+c HTTP/1.1\r\n"
                       b"Host: gw.example\r\nConnection: close\r\n\r\n")
        self.assertEqual(got["method"], "GET")
        self.assertEqual(got["raw_path"], "/a%2Fb/c%20d+e/%c3%a9/x.y")
        self.assertEqual(got["path"], "/a/b/c d+e/\u00e9/x.y")
        self.assertEqual(got["query"], "a=1&b=%2B+c")
        self.assertEqual(got["length"], 0)
        self.assertEqual(got["complete"], True)
        # The subject comes from the decoded path, escaped (protocol.md 1).
        peers.wait_listened(self.listen, lambda m: m.subject.startswith("subj.GET."))
        self.assertEqual(self.subjects(), ["subj.GET.a.b.c%20d+e.%C3%A9.x%2Ey"])

    def test_raw_path_without_percent_kept(self):
        got = self.ask(b"GET /p+q/r;s=t/u@v:w/~x HTTP/1.1\r\nHost: gw.example\r\n"
                       b"Connection: close\r\n\r\n")
        self.assertEqual(got["raw_path"], "/p+q/r;s=t/u@v:w/~x")
        self.assertEqual(got["path"], "/p+q/r;s=t/u@v:w/~x")
        self.assertEqual(got["query"], "")

    def test_BR12_request_headers_repeated_in_order(self):
        got = self.ask(b"GET /h HTTP/1.1\r\nHost: gw.example\r\nCookie: a=1\r\n"
                       b"Accept: a, b\r\nCookie: b=2; c=3\r\nx-MiXeD-CaSe: Value  With  Spaces\r\n"
                       b"Connection: close\r\n\r\n")
        self.assertEqual(peers.headers_named(got, "Cookie"), ["a=1", "b=2; c=3"])
        self.assertEqual(peers.headers_named(got, "Accept"), ["a, b"])
        self.assertEqual(peers.headers_named(got, "Host"), ["gw.example"])
        # The field name keeps the case the client used.
        self.assertEqual([[k, v] for k, v in got["headers"] if k.lower() == "x-mixed-case"],
                         [["x-MiXeD-CaSe", "Value  With  Spaces"]])
        self.assertEqual(sorted(k.lower() for k, _ in got["headers"]),
                         ["accept", "cookie", "cookie", "host", "x-mixed-case"])

    def test_empty_header_value_kept(self):
        got = self.ask(b"GET /e%2Fmpty HTTP/1.1\r\nHost: gw.example\r\nX-Empty:\r\n"
                       b"X-After: 1\r\nConnection: close\r\n\r\n")
        self.assertEqual(sorted(got["headers"]),
                         [["Host", "gw.example"], ["X-After", "1"], ["X-Empty", ""]])
        self.assertEqual(got["raw_path"], "/e%2Fmpty")

    def test_BR10_hop_by_hop_request_headers_not_forwarded(self):
        got = self.ask(b"GET /hop HTTP/1.1\r\nHost: gw.example\r\n"
                       b"Connection: Upgrade, HTTP2-Settings, X-Secret\r\n"
                       b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"
                       b"Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\n"
                       b"Proxy-Authorization: Basic Zm9vOmJhcg==\r\nX-Secret: s3cr3t\r\n"
                       b"X-Kept: yes\r\n\r\n")
        self.assertEqual(sorted(got["headers"]), [["Host", "gw.example"], ["X-Kept", "yes"]])

    def test_BR10_all_connection_headers_taken_together(self):
        got = self.ask(b"GET /hop2 HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n"
                       b"Connection: X-Forwarded-For\r\nX-Forwarded-For: 10.9.8.7\r\n"
                       b"X-Kept: 2\r\n\r\n")
        self.assertEqual(sorted(got["headers"]), [["Host", "gw.example"], ["X-Kept", "2"]])
        # The client's X-Forwarded-For was named in Connection: only ours remains.
        self.assertEqual(peers.headers_named(got, "X-Forwarded-For", "forwarding"), ["127.0.0.1"])

    def test_forwarding_fields_added(self):
        got = self.ask(b"GET /fw HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n")
        self.assertEqual(sorted(got["forwarding"]),
                         [["Via", "1.1 natshttp-gateway"], ["X-Forwarded-For", "127.0.0.1"],
                          ["X-Forwarded-Host", "gw.example"], ["X-Forwarded-Proto", "http"]])

    def test_forwarding_fields_appended_to_chains(self):
        got = self.ask(b"GET /fw2 HTTP/1.1\r\nHost: gw.example\r\nX-Forwarded-For: 10.0.0.1\r\n"
                       b"X-Forwarded-For: 10.0.0.2\r\nVia: 1.0 front\r\n"
                       b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: outer.example\r\n"
                       b"Connection: close\r\n\r\n")
        self.assertEqual(sorted(got["forwarding"]),
                         [["Via", "1.0 front, 1.1 natshttp-gateway"],
                          ["X-Forwarded-For", "10.0.0.1, 10.0.0.2, 127.0.0.1"],
                          ["X-Forwarded-Host", "outer.example, gw.example"],
                          ["X-Forwarded-Proto", "https, http"]])

    def test_forged_wire_headers_dropped(self):
        got = self.ask(b"GET /real?q=1 HTTP/1.1\r\nHost: gw.example\r\nX-Path: /forged\r\n"
                       b"x-PATH: /forged2\r\nX-Query: q=forged\r\nNatshttp-Raw-Path: /forged3\r\n"
                       b"X-Status-Code: 500\r\nX-Status: Forged\r\nX-Fragment: frag\r\n"
                       b"Connection: close\r\n\r\n")
        self.assertEqual(got["path"], "/real")
        self.assertEqual(got["raw_path"], "/real")
        self.assertEqual(got["query"], "q=1")
        self.assertEqual(got["headers"], [["Host", "gw.example"]])
        peers.wait_listened(self.listen, lambda m: m.subject.startswith("subj.GET."))
        msgs = peers.listened(self.listen)
        self.assertEqual([m.subject for m in msgs], ["subj.GET.real"])
        self.assertEqual(msgs[0].header_all("X-Path"), [])   # native: the subject is the path
        self.assertEqual(msgs[0].header_all("X-Query"), ["q=1"])
        self.assertEqual(msgs[0].header_all("Natshttp-Raw-Path"), [])

    def test_expect_not_forwarded(self):
        import socket
        with socket.create_connection(("127.0.0.1", self.gw.port), timeout=10) as s:
            s.sendall(b"POST /exp HTTP/1.1\r\nHost: gw.example\r\nContent-Length: 5\r\n"
                      b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
            head, _took, rest = peers.read_head(s)
            self.assertEqual(head, b"HTTP/1.1 100 Continue\r\n\r\n")
            self.assertEqual(rest, b"")
            s.sendall(b"hello")
            interim, resp, rest = peers.read_response(s)
        self.assertEqual(interim, [])
        self.assertEqual(resp.status, 200)
        echoed = peers.echo_json(resp.body)
        self.assertEqual(echoed["length"], 5)
        self.assertEqual(echoed["sha256"], harness.sha256_bytes(b"hello"))
        self.assertEqual(sorted(echoed["headers"]),
                         [["Content-Length", "5"], ["Host", "gw.example"]])


class RequestFidelityTestV1(RequestFidelityTest):
    """The same with the gateway speaking protocol v1 only."""
    gateway_args = ("--protocol", "1")


SET_COOKIES = [
    "session_id=abc123; Path=/; HttpOnly",
    "logout_flag=deleted; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; Path=/",
    "pref=dark; Path=/",
]


class ResponseFidelityTest(harness.E2ETestCase):
    timeout = 30

    def test_BR12_three_set_cookie_lines_separate_and_in_order(self):
        nats = harness.Nats()
        peers.natsraw_reply(nats, "subj.>", ["X-Status-Code: 200", "Content-Type: text/html",
                                             "Content-Length: 2"]
                            + [f"Set-Cookie: {c}" for c in SET_COOKIES], data="ok")
        gw = harness.gateway(nats, "subj")
        rc, out, err = harness.curl("-i", gw.base + "/cookies")
        self.assertEqual(rc, 0, err)
        head, sep, body = out.partition(b"\r\n\r\n")
        self.assertEqual(sep, b"\r\n\r\n")
        self.assertEqual(body, b"ok")
        lines = head.split(b"\r\n")
        self.assertEqual(lines[0], b"HTTP/1.1 200 OK")
        self.assertEqual([ln for ln in lines if ln.lower().startswith(b"set-cookie:")],
                         [f"Set-Cookie: {c}".encode() for c in SET_COOKIES])
        self.assertEqual([ln for ln in lines if ln.lower().startswith(b"content-type:")],
                         [b"Content-Type: text/html"])
        self.assertEqual([ln for ln in lines if ln.lower().startswith(b"content-length:")],
                         [b"Content-Length: 2"])
        self.assertEqual([ln for ln in lines if ln.lower().startswith(b"x-status")], [])


if __name__ == "__main__":
    harness.main()
