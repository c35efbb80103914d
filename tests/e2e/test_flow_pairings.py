"""Protocol negotiation (protocol.md 8.2): the four pairings of a v1 or v2
client with a v1 or v2 server, each with a 64 MiB download and 20 MiB
uploads (Content-Length and chunked), bytes checked by sha256 at the far end.

    curl -> gateway --protocol C -> nats-server -> serve --protocol S --dir
    curl -> gateway --protocol C -> nats-server -> serve --protocol S --upstream -> upload sink
    curl -> gateway --protocol C -> nats-server -> echo_responder (always v2-capable)
    nats-http request --protocol C -> nats-server -> serve --protocol S

Uploads to a v1 server go through `serve --protocol 1 --upstream` (the only
v1-only server of ours that takes bodies) to a Python HTTP sink that hashes
the body; serve --dir takes no bodies, so against `serve --protocol 1 --dir`
a chunked PUT must get its 405 intact. What each pairing puts on the wire is
checked too, with a natsraw listener on `>`: v2 headers only where both
sides speak v2, sequence numbers in the reply subjects, an explicit end and
credits in v2; in v1 none of it.
"""

import harness
import peers
import test_flow_common as fc
from test_flow_common import MIB

BIG = 64 * MIB
UP = 20 * MIB
SMALL = 2 * MIB + 5          # chunked (over 1 MiB), within one window
CHUNKED = 20 * MIB + 3       # a chunked response (no Content-Length) from the upstream
WIRE = 6 * MIB + 5           # over one window (4 MiB): v2 needs credit to finish
PAIRS = ((1, 1), (1, 2), (2, 1), (2, 2))      # (client, server)
NOT_ALLOWED = b"405 Method Not Allowed\n"


class PairingTest(harness.E2ETestCase, peers.UploadChecks):
    timeout = 90

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = harness.tmpdir("root")
        cls.big_sha = harness.make_random_file(cls.root / "big64.bin", BIG, seed=64)
        cls.small_sha = harness.make_random_file(cls.root / "small.bin", SMALL, seed=2)
        cls.up = harness.tmpdir("up") / "up20.bin"
        cls.up_sha = harness.make_random_file(cls.up, UP, seed=20)
        cls.wire_sha = harness.make_random_file(cls.root / "wire.bin", WIRE, seed=6)
        cls.wire_up = cls.up.parent / "wire-up.bin"
        harness.make_random_file(cls.wire_up, WIRE, seed=7)
        cls.chunked_sha = harness.sha256_bytes(fc.random_bytes(CHUNKED, 5))
        cls.nats = harness.Nats()
        cls.sink = fc.UploadSink()
        for v in (1, 2):
            harness.serve(cls.nats, f"site{v}", cls.root, "--protocol", v, name=f"serve-dir-v{v}")
            harness.serve_upstream(cls.nats, f"up{v}", cls.sink.base, "--protocol", v,
                                   name=f"serve-up-v{v}")
        peers.echo(cls.nats, "echo")

    def gateway(self, client: int, subject: str):
        self.gw = harness.gateway(self.nats, subject, "--protocol", client,
                                  name=f"gateway-v{client}-{subject}")
        return self.gw

    # -- downloads ------------------------------------------------------------
    def check_download(self, client: int, server: int):
        gw = self.gateway(client, f"site{server}")
        hdr = harness.tmpdir("hdr") / "headers"
        dl = fc.Download(gw.base + "/big64.bin", "-D", hdr, max_time=120)
        rc, size, sha, err = dl.wait(150)
        self.assertEqual(rc, 0, err)
        self.assertEqual(size, BIG)
        self.assertEqual(sha, self.big_sha)
        head = hdr.read_bytes().decode("latin-1")
        self.assertTrue(head.startswith("HTTP/1.1 200 "), head)
        self.assertIn(f"\r\nContent-Length: {BIG}\r\n", head)

    def check_download_wire(self, client: int, server: int):
        gw = self.gateway(client, f"site{server}")
        listen = peers.natsraw_listen(self.nats, ">", ms=30000)
        rc, body, err = harness.curl("-f", gw.base + "/wire.bin")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(body), WIRE)
        self.assertEqual(harness.sha256_bytes(body), self.wire_sha)
        v2 = client == 2 and server == 2
        subject = f"site{server}.GET.wire%2Ebin"

        def ended(m):
            return (m.header("Natshttp-End") is not None if v2
                    else m.data == b"" and not m.headers and m.subject != subject)
        msgs = peers.wait_listened(listen, ended, message="the end of the body")
        req = [m for m in msgs if m.subject == subject]
        self.assertEqual(len(req), 1, req)
        req = req[0]
        self.assertEqual(req.header_all("Natshttp-Version"), ["2"] if client == 2 else [])
        self.assertEqual(req.header_all("Natshttp-Window"),
                         [str(fc.WINDOW)] if client == 2 else [])
        to_client = [m for m in msgs if m.subject == req.reply]
        head = to_client[0]
        self.assertEqual(head.header_all("X-Status-Code"), ["200"])
        self.assertEqual(head.header_all("Content-Length"), [str(WIRE)])
        self.assertEqual(head.header_all("Natshttp-Version"), ["2"] if v2 else [])
        pieces = to_client[1:-1]
        end = to_client[-1]
        self.assertEqual(len(head.data) + sum(len(m.data) for m in pieces), WIRE)
        self.assertTrue(all(m.data for m in pieces), "no empty piece before the end")
        credits = [m for m in msgs if m.header("Natshttp-Credit") is not None]
        if v2:
            ctl = head.reply
            self.assertTrue(ctl.startswith("_INBOX.") and ctl != req.reply, ctl)
            first = 1 if head.data else 0
            self.assertEqual([m.reply for m in pieces],
                             [f"{ctl}.{first + i}" for i in range(len(pieces))])
            self.assertEqual(end.headers, [("Natshttp-End", str(WIRE))])
            self.assertEqual(end.data, b"")
            self.assertEqual(end.reply, f"{ctl}.{first + len(pieces)}")
            # credits go back to the piece they credit, in steps of >= window/4, and
            # the server sent no more than the window plus the credit it got
            piece_replies = {m.reply for m in pieces}
            for c in credits:
                self.assertIn(c.subject, piece_replies)
                self.assertGreaterEqual(int(c.header("Natshttp-Credit")), fc.WINDOW // 4)
            granted = sum(int(c.header("Natshttp-Credit")) for c in credits)
            self.assertGreaterEqual(granted, WIRE - fc.WINDOW)
            self.assertLessEqual(granted, WIRE)
        else:
            self.assertEqual(head.reply, "")
            self.assertEqual([m.reply for m in pieces], [""] * len(pieces))
            self.assertEqual((end.headers, end.data, end.reply), ([], b"", ""))
            self.assertEqual(credits, [])
            self.assertEqual([m for m in msgs if any(k.startswith("Natshttp-") and
                                                     k not in ("Natshttp-Version",
                                                               "Natshttp-Window")
                                                     for k, _ in m.headers)], [])

    def check_chunked_download(self, client: int, server: int):
        """A response of unknown length (the upstream's is chunked) through each pairing."""
        gw = self.gateway(client, f"up{server}")
        hdr = harness.tmpdir("hdr") / "headers"
        dl = fc.Download(gw.base + f"/chunked/{CHUNKED}/5", "-D", hdr, max_time=120)
        rc, size, sha, err = dl.wait(150)
        self.assertEqual(rc, 0, err)
        self.assertEqual(size, CHUNKED)
        self.assertEqual(sha, self.chunked_sha)
        head = hdr.read_bytes().decode("latin-1").lower()
        self.assertTrue(head.startswith("http/1.1 200 "), head)
        self.assertIn("\r\ntransfer-encoding: chunked\r\n", head)
        self.assertNotIn("\r\ncontent-length:", head)

    def check_request_download(self, client: int, server: int):
        out = harness.tmpdir("req") / "big64.bin"
        rc, _, err = harness.request(self.nats, "--protocol", client, "-o", out,
                                     f"nats+http://site{server}/big64.bin", timeout=120)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.stat().st_size, BIG)
        self.assertEqual(harness.sha256_file(out), self.big_sha)

    # -- uploads ----------------------------------------------------------------
    def sink_upload(self, client: int, server: int, chunked: bool) -> dict:
        gw = self.gateway(client, f"up{server}")
        out = harness.tmpdir("curl") / "body"
        args = ["-o", out, "-w", "%{http_code}", "-T", self.up]
        if chunked:
            args += ["-H", "Transfer-Encoding: chunked"]
        rc, code, err = harness.curl(*args, gw.base + "/up/put.bin", max_time=120)
        self.assertEqual(rc, 0, err)
        self.assertEqual(code, b"200", out.read_bytes()[:300])
        got = fc.sink_json(out.read_bytes())
        self.assertEqual((got["method"], got["path"], got["length"], got["sha256"]),
                         ("PUT", "/up/put.bin", UP, self.up_sha))
        self.assertEqual(got["chunked"], chunked)
        self.assertEqual(got["content_length"], None if chunked else str(UP))
        return got

    def check_upload_wire(self, client: int, server: int):
        gw = self.gateway(client, f"up{server}")
        listen = peers.natsraw_listen(self.nats, ">", ms=30000)
        out = harness.tmpdir("curl") / "body"
        rc, code, err = harness.curl("-o", out, "-w", "%{http_code}", "-T", self.wire_up,
                                     "-H", "Transfer-Encoding: chunked", gw.base + "/w/put.bin")
        self.assertEqual(rc, 0, err)
        self.assertEqual((code, fc.sink_json(out.read_bytes())["length"]), (b"200", WIRE))
        v2 = client == 2 and server == 2
        subject = f"up{server}.PUT.w.put%2Ebin"
        msgs = peers.wait_listened(listen, lambda m: m.header("X-Status-Code") is not None,
                                   message="the response head")
        first = [m for m in msgs if m.subject == subject]
        self.assertEqual(len(first), 1, first)
        first = first[0]
        self.assertEqual(first.header_all("Transfer-Encoding"), ["chunked"])
        self.assertEqual(first.header_all("Natshttp-Version"), ["2"] if client == 2 else [])
        shakes = [m for m in msgs if m.subject == first.reply and m.header("X-Status-Code") is None
                  and m.header("Natshttp-Credit") is None]
        self.assertEqual(len(shakes), 1, shakes)
        shake = shakes[0]
        self.assertEqual(shake.data, b"")
        self.assertEqual(shake.headers, [("Natshttp-Version", "2"),
                                         ("Natshttp-Window", str(fc.WINDOW))] if v2 else [])
        body = [m for m in msgs if m.subject == shake.reply]
        end = body[-1]
        pieces = body[:-1]
        self.assertEqual(len(first.data) + sum(len(m.data) for m in pieces), WIRE)
        credits = [m for m in msgs if m.header("Natshttp-Credit") is not None]
        if v2:
            k0 = 1 if first.data else 0
            self.assertEqual([m.reply for m in pieces],
                             [f"{first.reply}.{k0 + i}" for i in range(len(pieces))])
            self.assertEqual((end.headers, end.data), ([("Natshttp-End", str(WIRE))], b""))
            # request credits go to R.<seq> with reply C; the first message's data is
            # not under the window
            piece_replies = {m.reply for m in pieces}
            for c in credits:
                self.assertIn(c.subject, piece_replies)
                self.assertEqual(c.reply, shake.reply)
                self.assertGreaterEqual(int(c.header("Natshttp-Credit")), fc.WINDOW // 4)
            granted = sum(int(c.header("Natshttp-Credit")) for c in credits)
            self.assertGreaterEqual(granted, WIRE - len(first.data) - fc.WINDOW)
            self.assertLessEqual(granted, WIRE - len(first.data))
        else:
            self.assertEqual([m.reply for m in pieces], [""] * len(pieces))
            self.assertEqual((end.headers, end.data, end.reply), ([], b"", ""))
            self.assertEqual(credits, [])

    def check_echo_upload(self, client: int):
        self.gateway(client, "echo")
        for method, chunked in (("POST", False), ("PUT", True)):
            with self.subTest(method=method, chunked=chunked):
                status, echoed = self.curl_upload("/up/file.bin", self.up, method, chunked)
                self.assert_echoed(status, echoed, method, UP, self.up_sha,
                                   content_length=not chunked)

    def check_request_upload(self, client: int, server: int):
        # Content-Length (a regular file) and chunked (a pipe: length unknown)
        data = self.up.read_bytes()
        for chunked in (False, True):
            with self.subTest(chunked=chunked):
                src = ["-d", "@/dev/stdin"] if chunked else ["-d", f"@{self.up}"]
                rc, out, err = harness.request(
                    self.nats, "--protocol", client, "-X", "PUT", *src,
                    f"nats+http://up{server}/req/put.bin",
                    input=data if chunked else None, timeout=120)
                self.assertEqual(rc, 0, err)
                got = fc.sink_json(out)
                self.assertEqual((got["method"], got["length"], got["sha256"], got["chunked"]),
                                 ("PUT", UP, self.up_sha, chunked))

    def check_405_from_v1_dir(self, client: int):
        gw = self.gateway(client, "site1")
        out = harness.tmpdir("curl") / "body"
        rc, code, err = harness.curl("-o", out, "-w", "%{http_code}", "-T", self.up,
                                     "-H", "Transfer-Encoding: chunked",
                                     gw.base + "/big64.bin", max_time=60)
        self.assertEqual(rc, 0, err)
        self.assertEqual(code, b"405")
        self.assertEqual(out.read_bytes(), NOT_ALLOWED)
        # and the gateway still serves the next request
        rc, body, err = harness.curl("-f", gw.base + "/small.bin")
        self.assertEqual((rc, harness.sha256_bytes(body)), (0, self.small_sha), err)


def _add(name, fn):
    setattr(PairingTest, name, fn)


for _c, _s in PAIRS:
    tag = f"client_v{_c}_server_v{_s}"
    _add(f"test_download_64MiB_{tag}", lambda self, c=_c, s=_s: self.check_download(c, s))
    _add(f"test_download_20MiB_chunked_{tag}",
         lambda self, c=_c, s=_s: self.check_chunked_download(c, s))
    _add(f"test_download_wire_{tag}", lambda self, c=_c, s=_s: self.check_download_wire(c, s))
    _add(f"test_request_download_64MiB_{tag}",
         lambda self, c=_c, s=_s: self.check_request_download(c, s))
    _add(f"test_upload_20MiB_content_length_{tag}",
         lambda self, c=_c, s=_s: self.sink_upload(c, s, chunked=False) and None)
    _add(f"test_upload_20MiB_chunked_{tag}",
         lambda self, c=_c, s=_s: self.sink_upload(c, s, chunked=True) and None)
    _add(f"test_upload_wire_{tag}", lambda self, c=_c, s=_s: self.check_upload_wire(c, s))
    _add(f"test_request_upload_20MiB_{tag}",
         lambda self, c=_c, s=_s: self.check_request_upload(c, s))
for _c in (1, 2):
    _add(f"test_upload_20MiB_to_echo_client_v{_c}_server_v2",
         lambda self, c=_c: self.check_echo_upload(c))
    _add(f"test_chunked_put_405_client_v{_c}_server_v1_dir",
         lambda self, c=_c: self.check_405_from_v1_dir(c))


if __name__ == "__main__":
    harness.main()
