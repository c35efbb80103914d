"""BR-24: large request heads. An 8000-byte Cookie reaches echo_responder
intact; a head over the gateway's limit gets 431 with `Connection: close` and
never reaches NATS; 300 header fields likewise. Near the limit every request
is either forwarded intact or a 431, never a blank answer or a truncated
header (protocol.md 7: the limit is a 32 KiB head).

    raw socket -> nats-http gateway -> nats-server -> echo_responder
                                                   \\-> natsraw listen 'subj.>'
"""

import harness
from test_upstream_common import UpstreamStack

# The gateway's own limit on a request head (NATSHTTP_DEFAULT_MAX_HEAD).
MAX_HEAD = 32 * 1024
import peers


def cookie_request(n: int, path: str = "/") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: gw.example\r\nCookie: a=".encode() + b"c" * n
            + b"\r\nConnection: close\r\n\r\n")


class LargeHeadTest(harness.E2ETestCase):
    timeout = 60
    maxDiff = None

    def setUp(self):
        self.nats, self.echo, self.gw = peers.echo_stack("subj")
        self.listen = peers.natsraw_listen(self.nats, "subj.>", ms=50000)

    def assert_nothing_on_nats(self):
        resp, _ = peers.exchange(self.gw.port, b"GET /marker HTTP/1.1\r\nHost: x\r\n"
                                 b"Connection: close\r\n\r\n")
        self.assertEqual(resp.status, 200)
        msgs = peers.wait_listened(self.listen, lambda m: m.subject == "subj.GET.marker")
        self.assertEqual([m.subject for m in msgs], ["subj.GET.marker"])

    def assert_431(self, request: bytes):
        data, how = harness.raw_http(self.gw.port, request, read_timeout=5, detail=True)
        data = peers.undouble_mhd_error(data)
        resps, rest = peers.split_responses(data)
        self.assertEqual(len(resps), 1, f"want exactly one response, got {data[:400]!r}")
        self.assertEqual(rest, b"", f"bytes after the response: {data[:600]!r}")
        self.assertEqual(resps[0].status, 431, data[:400])
        self.assertEqual(resps[0].header("Connection"), "close")
        self.assertIn(how, ("closed", "reset"))

    def assert_cookie_forwarded(self, n: int):
        resp, extra = peers.exchange(self.gw.port, cookie_request(n, f"/c{n}"))
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(extra, b"")
        echoed = peers.echo_json(resp.body)
        self.assertEqual(echoed["path"], f"/c{n}")
        cookie = peers.headers_named(echoed, "Cookie")
        self.assertEqual(len(cookie), 1)
        self.assertEqual(len(cookie[0]), n + 2)
        self.assertEqual(cookie[0], "a=" + "c" * n)

    def test_BR24_8000_byte_cookie_intact(self):
        self.assert_cookie_forwarded(8000)

    def test_BR24_70000_byte_cookie_431(self):
        self.assert_431(cookie_request(70000))
        self.assert_nothing_on_nats()

    def test_BR24_300_headers_431(self):
        self.assert_431(b"GET / HTTP/1.1\r\nHost: gw.example\r\n"
                        + b"".join(b"X-H%d: v\r\n" % i for i in range(1, 301)) + b"\r\n")
        self.assert_nothing_on_nats()

    def test_BR24_head_under_32KiB_forwarded(self):
        # A head of about 30 KB is under the documented 32 KiB limit.
        self.assertLess(len(cookie_request(30000)), 32 * 1024)
        self.assert_cookie_forwarded(30000)

    def test_BR24_head_over_32KiB_431(self):
        self.assertGreater(len(cookie_request(33000)), 32 * 1024)
        self.assert_431(cookie_request(33000))
        self.assert_nothing_on_nats()

    def test_BR24_near_the_limit_forwarded_or_431(self):
        # Cookie sizes from well under the limit to three times over it, 40
        # bytes apart: each is forwarded intact or refused with one whole 431;
        # none gets a blank close or a broken answer.
        bad: dict[str, list[int]] = {}
        silent: list[int] = []
        forwarded, refused = 0, 0
        for n in range(20000, 110000, 40):
            data, how = harness.raw_http(self.gw.port, cookie_request(n), read_timeout=5,
                                         detail=True)
            data = peers.undouble_mhd_error(data)
            resps, rest = peers.split_responses(data)
            if not data and n > MAX_HEAD:
                # libmicrohttpd 0.9.75 closes without an answer for some heads
                # around the size of its memory pool (docs/limitations.md);
                # nothing is forwarded, and the gateway stays up.
                silent.append(n)
                continue
            if not data:
                bad.setdefault(f"nothing, then {how}", []).append(n)
                continue
            if len(resps) != 1 or rest:
                bad.setdefault(f"not one whole response: {data[:40]!r}...", []).append(n)
                continue
            if resps[0].status == 200:
                cookie = peers.headers_named(peers.echo_json(resps[0].body), "Cookie")
                self.assertEqual(cookie, ["a=" + "c" * n], f"cookie of {n} bytes")
                forwarded += 1
            else:
                self.assertEqual(resps[0].status, 431, f"cookie of {n} bytes: {data[:200]!r}")
                refused += 1
        self.assertEqual({k: v if len(v) <= 24 else f"{len(v)} sizes from {v[0]} to {v[-1]}"
                          for k, v in bad.items()},
                         {}, "cookie sizes answered with no or a broken response")
        self.assertGreater(forwarded, 0)
        self.assertGreater(refused, 0)
        self.assertLess(len(silent), refused, f"silent closes at {silent}")


class HeadSizeTest(harness.E2ETestCase):
    """--max-head bounds request and response heads alike, and the gateway's
    per-connection memory is sized from it (2 x the limit and a little): the
    largest request head and the largest response head fit on one connection
    together, one byte more is a 431 (request) or a 502 (response)."""
    timeout = 120

    def exchange_heads(self, st, cookie: int, response: int):
        req = (f"GET /up/big-head?n={response} HTTP/1.1\r\nHost: up\r\nCookie: a=".encode()
               + b"c" * cookie + b"\r\n\r\n")
        with peers.Conn(st.port) as c:
            c.send(req)
            first = c.response("GET")
            c.send(b"GET /up/big-head?n=10 HTTP/1.1\r\nHost: up\r\n\r\n")
            return first, c.response("GET")

    def check_limit(self, st, limit: int):
        # Both heads as large as the limit allows, on one keep-alive connection.
        room = limit - 200
        first, after = self.exchange_heads(st, room, room)
        self.assertEqual(first.status, 200, first)
        self.assertEqual(first.header_all("X-Big"), ["b" * room])
        self.assertEqual(first.body, b"ok")
        self.assertEqual((after.status, after.header("X-Big"), after.body), (200, "b" * 10, b"ok"))
        # A response head over the limit: 502 with a reason, the connection stays usable.
        first, after = self.exchange_heads(st, 10, limit + 100)
        self.assertEqual(first.status, 502, first)
        self.assertEqual(first.header_all("X-Big"), [])
        self.assertEqual((after.status, after.body), (200, b"ok"))
        # A request head over the limit: 431, closed.
        data, how = harness.raw_http(st.port, b"GET /up/big-head?n=1 HTTP/1.1\r\nHost: up\r\n"
                                     b"Cookie: a=" + b"c" * (limit + 100) + b"\r\n\r\n",
                                     read_timeout=5, detail=True)
        resps, _ = peers.split_responses(peers.undouble_mhd_error(data))
        self.assertEqual([r.status for r in resps], [431], data[:300])

    def test_default_32KiB(self):
        self.check_limit(UpstreamStack(), MAX_HEAD)

    def test_max_head_4KiB_and_16KiB(self):
        for limit in (4096, 16384):
            with self.subTest(limit=limit):
                lim = str(limit)
                self.check_limit(UpstreamStack(serve_args=("--max-head", lim),
                                               gateway_args=("--max-head", lim)), limit)

    def test_max_head_8KiB(self):
        st = UpstreamStack(serve_args=("--max-head", "8192"), gateway_args=("--max-head", "8192"))
        self.check_limit(st, 8192)
        # BR-24's 8 KB cookie still passes at this limit.
        resp, _ = peers.exchange(st.port, cookie_request(8000, "/up/echo"))
        self.assertEqual(resp.status, 200, resp)

    def test_max_head_out_of_range(self):
        for bad in ("4095", "262145"):
            rc, _, err = harness.nats_http("gateway", "--subject", "x", "--max-head", bad,
                                           "--listen", "127.0.0.1:0")
            self.assertEqual(rc, 2, err)
            self.assertIn("--max-head must be 4096 to 262144 bytes", err)


if __name__ == "__main__":
    harness.main()
