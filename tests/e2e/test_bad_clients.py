"""Gateway robustness against HTTP clients that go away: half a request
head, a Content-Length of 1 MiB with 10 bytes sent, a chunked body cut off;
twenty of each in parallel with normal requests. The normal ones all
succeed, the gateway stays up, and its open file descriptors return to the
baseline.

    raw socket / curl -> nats-http gateway -> nats-server -> echo_responder
"""

import socket
import threading
import time

import harness
import peers


def half_head(port: int):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /half HTTP/1.1\r\nHost: x\r\nX-Lon")
        time.sleep(0.2)


def short_body(port: int):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"PUT /short HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n0123456789")
        time.sleep(0.2)


def short_small_body(port: int):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /short2 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
        time.sleep(0.2)


def cut_chunked(port: int):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"PUT /cut HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"100000\r\n0123456789")
        time.sleep(0.2)


def reset_mid_body(port: int):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"PUT /reset HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n" + b"x" * 70000)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()                                   # RST


class GoneClientsTest(harness.E2ETestCase):
    timeout = 60

    def setUp(self):
        self.nats, self.echo, self.gw = peers.echo_stack("subj")
        self.check_normal(0)
        time.sleep(0.2)
        self.baseline = self.gw.open_fds()
        self.baseline_subs = self.nats.subsz()

    def normal(self, i: int, results: list):
        rc, out, err = harness.curl("--data-binary", f"normal request {i}",
                                    self.gw.base + f"/n/{i}")
        results.append((i, rc, err, out))

    def check_normal(self, i: int):
        results: list = []
        self.normal(i, results)
        self.assert_normal(*results[0])

    def assert_normal(self, i, rc, err, out):
        self.assertEqual(rc, 0, f"normal request {i}: {err}")
        body = f"normal request {i}".encode()
        echoed = peers.echo_json(out)
        self.assertEqual((echoed["path"], echoed["length"], echoed["sha256"], echoed["complete"]),
                         (f"/n/{i}", len(body), harness.sha256_bytes(body), True))

    def assert_fds_back(self):
        harness.wait_until(lambda: self.gw.open_fds() == self.baseline, 5, 0.1,
                           f"gateway open fds back to {self.baseline}")
        self.assertEqual(self.gw.open_fds(), self.baseline)

    def run_gone(self, kinds, n: int = 20):
        results: list = []
        threads = []
        for i in range(n):
            for k in kinds:
                threads.append(threading.Thread(target=k, args=(self.gw.port,)))
            threads.append(threading.Thread(target=self.normal, args=(i + 1, results)))
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(sorted(r[0] for r in results), list(range(1, n + 1)))
        for r in results:
            self.assert_normal(*r)
        self.assertTrue(self.gw.alive())
        self.assert_fds_back()
        # No subscription was left behind for a request that went away.
        self.assertEqual(self.nats.subsz(), self.baseline_subs)
        # And afterwards, one at a time.
        for i in range(1, 4):
            self.check_normal(100 + i)

    def test_half_request_then_disconnect(self):
        self.run_gone([half_head])

    def test_content_length_1MiB_then_10_bytes_and_close(self):
        self.run_gone([short_body])

    def test_content_length_1000_then_10_bytes_and_close(self):
        self.run_gone([short_small_body])

    def test_chunked_body_cut_off(self):
        self.run_gone([cut_chunked])

    def test_reset_mid_body(self):
        self.run_gone([reset_mid_body])

    def test_all_at_once(self):
        self.run_gone([half_head, short_body, short_small_body, cut_chunked, reset_mid_body])
        # Every client that sent its head and then left is logged once as gone
        # early (a reset may come before the head is read: not counted).
        log = self.gw.log_text()
        for method, target in (("PUT", "/short"), ("POST", "/short2"), ("PUT", "/cut")):
            lines = harness.access_entries(log, method=method, target=target, end="client_closed")
            self.assertEqual(len(lines), 20, f"{method} {target}: {log[-2000:]}")


if __name__ == "__main__":
    harness.main()
