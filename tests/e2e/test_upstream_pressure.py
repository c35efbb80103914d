"""Backpressure through serve --upstream (issue 3, item 3): a slow HTTP client
pauses the upstream download (txn_write AGAIN -> curl paused -> on_writable),
a slow upstream pauses the upload (no chunk freed -> no credit), and memory
stays bounded by configuration, not by the body size."""

import hashlib
import json
import os
import socket
import struct
import subprocess
import time

import harness
import upstream_server
from test_upstream_common import UpstreamStack

MIB = 1024 * 1024
SIZE = 48 * MIB
RATE = 8 * MIB          # bytes per second on the slow side: about 6 s per transfer
# AddressSanitizer keeps freed memory in quarantine: RSS says nothing there.
SANITIZED = os.environ.get("NATSHTTP_SANITIZED") == "1"


def grew(proc, before_kib):
    return (proc.peak_rss_kib() - before_kib) / 1024


class PressureTest(harness.E2ETestCase):
    timeout = 120

    def test_slow_client_pauses_the_upstream_download(self):
        st = UpstreamStack()
        gw0, serve0 = st.gw.peak_rss_kib(), st.serve.peak_rss_kib()
        t0 = time.monotonic()
        p = subprocess.run([harness.CURL, "-sS", "--noproxy", "*", "--max-time", "60",
                            "--limit-rate", str(RATE), "-o", "-",
                            st.base + f"/up/download?size={SIZE}"], capture_output=True)
        took = time.monotonic() - t0
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(hashlib.sha256(p.stdout).hexdigest(), upstream_server.download_sha256(SIZE))
        g, s = grew(st.gw, gw0), grew(st.serve, serve0)
        print(f"\n{SIZE // MIB} MiB to a client reading {RATE // MIB} MiB/s: {took:.1f} s; peak RSS "
              f"grew by {g:.1f} MiB (gateway), {s:.1f} MiB (serve)", flush=True)
        self.assertGreater(took, SIZE / RATE * 0.7)
        # the v2 window is 4 MiB: neither side may hold the body
        if not SANITIZED:
            self.assertLess(g, 24)
            self.assertLess(s, 24)
        self.assertEqual([l for l in st.serve.log_text().splitlines() if "upstream: " in l], [])

    def test_slow_upstream_pauses_the_upload(self):
        st = UpstreamStack()
        data = harness.tmpdir("up") / "body.bin"
        sha = harness.make_random_file(data, SIZE, seed=48)
        gw0, serve0 = st.gw.peak_rss_kib(), st.serve.peak_rss_kib()
        t0 = time.monotonic()
        rc, out, err = harness.curl("-X", "POST", "-T", data, st.base + f"/up/sink?rate={RATE}",
                                    max_time=60)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, err)
        got = json.loads(out)
        self.assertEqual((got["length"], got["sha256"]), (SIZE, sha))
        g, s = grew(st.gw, gw0), grew(st.serve, serve0)
        print(f"\n{SIZE // MIB} MiB to an upstream reading {RATE // MIB} MiB/s: {took:.1f} s; peak "
              f"RSS grew by {g:.1f} MiB (gateway), {s:.1f} MiB (serve)", flush=True)
        self.assertGreater(took, SIZE / RATE * 0.7)
        if not SANITIZED:
            self.assertLess(g, 24)
            self.assertLess(s, 24)

    def test_slow_upstream_chunked_upload(self):
        st = UpstreamStack()
        data = harness.tmpdir("up") / "body.bin"
        sha = harness.make_random_file(data, 16 * MIB, seed=16)
        # from stdin: curl sends it chunked, and so does serve to the upstream
        with open(data, "rb") as f:
            p = subprocess.run([harness.CURL, "-sS", "--noproxy", "*", "--max-time", "60",
                                "-X", "PUT", "-T", "-", st.base + f"/up/sink?rate={RATE}"],
                               stdin=f, capture_output=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        got = json.loads(p.stdout)
        self.assertEqual((got["length"], got["sha256"]), (16 * MIB, sha))

    def test_client_resetting_an_upload_that_waits_for_credit_is_noticed(self):
        # The upstream takes 1 KiB/s, so the v2 upload soon waits for credit:
        # the gateway has suspended the connection, and libmicrohttpd does not
        # poll a suspended socket. The client then resets the connection (a
        # crash, a middlebox): the gateway must end the request within its
        # watch interval, not at its 30 s idle timeout.
        st = UpstreamStack()
        sock = socket.create_connection(("127.0.0.1", st.port), timeout=10)
        sock.sendall(b"POST /up/sink?rate=1024 HTTP/1.1\r\nHost: up\r\n"
                     b"Content-Length: %d\r\n\r\n" % (256 * MIB))
        sock.setblocking(False)
        sent, chunk, stuck_since = 0, b"u" * 65536, None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:   # until nothing more is taken for 1 s
            try:
                sent += sock.send(chunk)
                stuck_since = None
            except BlockingIOError:
                stuck_since = stuck_since or time.monotonic()
                if time.monotonic() - stuck_since > 1:
                    break
                time.sleep(0.01)
        self.assertIsNotNone(stuck_since, "the upload never waited")
        self.assertGreater(sent, 4 * MIB, "the gateway should take more than one window")
        self.assertLess(sent, 200 * MIB)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        t0 = time.monotonic()
        sock.close()   # RST
        harness.wait_until(lambda: 'target="/up/sink' in st.gw.log_text(), 5, 0.05,
                           "the gateway's access line of the reset upload")
        took = time.monotonic() - t0
        line = [l for l in st.gw.log_text().splitlines() if "access" in l and "/up/sink" in l][0]
        self.assertIn("end=client_closed", line)
        self.assertIn("the client left during the upload; cancelled", st.gw.log_text())
        print(f"\nreset upload ended {took:.2f} s after the client's reset ({sent // MIB} MiB sent)",
              flush=True)
        st.gw.stop(check=True)

if __name__ == "__main__":
    harness.main()
