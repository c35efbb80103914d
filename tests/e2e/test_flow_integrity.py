"""Integrity of v2 bodies (protocol.md 8.3): a lost or repeated piece, and a
server that dies mid-stream (proxy case BR-19, the "NATS-side server killed
mid-stream" variant), are never delivered as a complete body.

    curl -> gateway -> nats-server -> serve --dir   (serve with a test hook)
    curl -> gateway (with a test hook) -> nats-server -> echo_responder

The hooks (env, read at start): NATSHTTP_TEST_DROP_SEQ=N / NATSHTTP_TEST_DUP_SEQ=N
make a v2 sender skip or repeat its body piece N. A natsraw listener records
the pieces actually published, so the exact number of bytes the HTTP client
may receive (the pieces before the gap) is known.
"""

import time

import harness
import peers
import test_flow_common as fc
from test_flow_common import MIB

SIZE = 16 * MIB
UPLOAD = 8 * MIB


class LostPieceDownloadTest(harness.E2ETestCase):
    timeout = 60

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = harness.tmpdir("root")
        cls.path = cls.root / "big16.bin"
        cls.sha = harness.make_random_file(cls.path, SIZE, seed=16)
        cls.small = b"small and whole\n"
        (cls.root / "small.txt").write_bytes(cls.small)

    def check(self, hook: str, seq: int):
        nats = harness.Nats()
        serve = harness.serve(nats, "site", self.root, env={hook: str(seq)})
        serve.wait_for(r"test hooks active: drop piece (-?\d+), repeat piece (-?\d+)", 2)
        gw = harness.gateway(nats, "site")
        listen = peers.natsraw_listen(nats, "_INBOX.>", ms=30000)
        out = harness.tmpdir("out") / "body"
        rc, w, err = harness.curl("-o", out, "-w", "%{http_code} %{size_download}",
                                  gw.base + "/big16.bin", max_time=30)
        code, got = w.decode().split()
        got = int(got)
        self.assertEqual(rc, 18, f"curl must see the body cut short: {err}")
        self.assertEqual(code, "200")
        self.assertLess(got, SIZE)
        # curl writes no file when no body byte came (the gateway may cut before any)
        self.assertEqual(out.stat().st_size if out.exists() else 0, got)
        # what did arrive is the file's first bytes, from the pieces before the gap
        if got:
            self.assertEqual(harness.sha256_file(out), fc.sha256_prefix(self.path, got))
        gw.wait_for(r"GET /big16\.bin: response broke off \(body ended early\); "
                    r"closing the connection", 5)
        due, came = (seq, seq + 1) if hook.endswith("DROP_SEQ") else (seq + 1, seq)
        gw.wait_for(rf"call \d+: body piece {came} where {due} was due "
                    rf"\(lost or repeated\); aborted", 5)

        def recorded():
            msgs = peers.listened(listen)
            head = [m for m in msgs if m.header("X-Status-Code") == "200"]
            if not head:
                return None
            ctl = head[0].reply
            pieces = {}
            for m in msgs:
                if m.reply.startswith(ctl + ".") and m.data:
                    pieces.setdefault(int(m.reply[len(ctl) + 1:]), len(m.data))
            first = 1 if head[0].data else 0
            if not set(range(first, due)) <= set(pieces):
                return None
            return head, pieces, first
        head, pieces, first = harness.wait_until(recorded, 10, 0.05,
                                                 "the listener recorded the pieces")
        self.assertEqual(len(head), 1, head)
        # The gateway closes the connection at the gap, dropping what it still
        # held: the client may get fewer bytes than arrived intact, never more.
        self.assertLessEqual(got, len(head[0].data) + sum(n for k, n in pieces.items()
                                                          if first <= k < due))
        # the gateway and serve go on
        rc, body, err = harness.curl("-f", gw.base + "/small.txt")
        self.assertEqual((rc, body), (0, self.small), err)

    def test_drop_piece_3_download_16MiB(self):
        self.check("NATSHTTP_TEST_DROP_SEQ", 3)

    def test_dup_piece_3_download_16MiB(self):
        self.check("NATSHTTP_TEST_DUP_SEQ", 3)


class LostPieceUploadTest(harness.E2ETestCase):
    timeout = 60

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.file = harness.tmpdir("up") / "up8.bin"
        cls.sha = harness.make_random_file(cls.file, UPLOAD, seed=8)

    def check(self, hook: str, seq: int):
        nats = harness.Nats()
        echo = peers.echo(nats, "subj")
        gw = harness.gateway(nats, "subj", env={hook: str(seq)})
        gw.wait_for(r"test hooks active", 2)
        out = harness.tmpdir("curl") / "body"
        rc, code, err = harness.curl("-o", out, "-w", "%{http_code}", "-T", self.file,
                                     "-H", "Transfer-Encoding: chunked",
                                     gw.base + "/up/lost.bin", max_time=30)
        body = out.read_bytes() if out.exists() else b""
        if rc == 0 and code == b"200":
            echoed = peers.echo_json(body)
            self.assertEqual(echoed["complete"], False, echoed)
            self.assertLess(echoed["length"], UPLOAD)
        else:
            # the request failed: never a 200 with echo's answer of a whole body
            self.assertNotIn(b'"complete":true', body)
        due, came = (seq, seq + 1) if hook.endswith("DROP_SEQ") else (seq + 1, seq)
        echo.wait_for(rf"request \d+: body piece {came} where {due} was due "
                      rf"\(lost or repeated\); aborted", 5)
        # the next upload, with no piece lost, is whole
        small = b"x" * 1000
        rc, out2, err = harness.curl("-f", "--data-binary", "@-", gw.base + "/up/ok",
                                     input=small)
        self.assertEqual(rc, 0, err)
        e = peers.echo_json(out2)
        self.assertEqual((e["length"], e["sha256"], e["complete"]),
                         (1000, harness.sha256_bytes(small), True))

    def test_drop_piece_2_upload_8MiB_chunked(self):
        self.check("NATSHTTP_TEST_DROP_SEQ", 2)

    def test_dup_piece_2_upload_8MiB_chunked(self):
        self.check("NATSHTTP_TEST_DUP_SEQ", 2)


class ServerKilledTest(harness.E2ETestCase):
    """BR-19, variant "the NATS-side server process is killed mid-stream"."""
    timeout = 60

    def test_BR19_serve_killed_mid_download_256MiB(self):
        root = harness.tmpdir("root")
        path = root / "big256.bin"
        sha = harness.make_random_file(path, 256 * MIB, seed=19)
        nats = harness.Nats()
        serve = harness.serve(nats, "site", root)
        gw = harness.gateway(nats, "site", "--idle-timeout", "3")
        dl = fc.Download(gw.base + "/big256.bin", "--limit-rate", "20M", max_time=60)
        dl.wait_received(16 * MIB, 20)
        self.assertIsNone(dl.p.poll(), "the download is in progress")
        serve.kill()
        t_kill = time.monotonic()
        rc, size, got_sha, err = dl.wait(30)
        took = time.monotonic() - t_kill
        self.assertEqual(rc, 18, f"curl must see the body cut short: {err}")
        self.assertLess(size, 256 * MIB)
        self.assertGreaterEqual(size, 16 * MIB)
        self.assertEqual(got_sha, fc.sha256_prefix(path, size))
        # idle timeout 3 s, plus 5 s slack for this shared 2-core machine
        self.assertLess(took, 3 + 5, f"curl ended {took:.1f} s after serve was killed")
        # serve is gone: the gateway sees the body stall (or end short).
        gw.wait_for(r"GET /big256\.bin: response broke off \((body ended early|transfer made "
                    r"no progress within the idle timeout)\)", 8)
        # a new serve takes over: requests work again, whole
        harness.serve(nats, "site", root, name="serve-2")
        dl2 = fc.Download(gw.base + "/big256.bin", "-f", max_time=60)
        rc, size, got_sha, err = dl2.wait(60)
        self.assertEqual((rc, size, got_sha), (0, 256 * MIB, sha), err)


if __name__ == "__main__":
    harness.main()
