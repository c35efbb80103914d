"""Load on one gateway and one serve --dir, in order: a 64 MiB download, 50
concurrent requests, 2,000 mixed requests with nats-server's subscription
count back at its baseline afterwards; then both still answer and exit 0 on
SIGTERM."""

import collections
import concurrent.futures
import hashlib
import http.client
import sys
import threading

import harness
from test_static_common import make_tree, rand_bytes, wire_leaks

MIB = 1024 * 1024
NOT_FOUND = b"404 Not Found\n"
NOT_ALLOWED = b"405 Method Not Allowed\n"
NO_RESPONDERS = b"natshttp gateway: no responders on the subject\n"


class LoadTest(harness.E2ETestCase):
    timeout = 60

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        base = harness.tmpdir("tree")
        cls.tree = make_tree(base)
        cls.big_sha = harness.make_random_file(cls.tree.root / "big64.bin", 64 * MIB, seed=64)
        cls.two = cls.tree.add("two.bin", rand_bytes(2 * MIB, 22))
        cls.nats = harness.Nats()
        cls.serve = harness.serve(cls.nats, "site", cls.tree.root)
        cls.gw = harness.gateway(cls.nats, "site")
        cls.gw_none = harness.gateway(cls.nats, "nobody", name="gateway-nobody")

    def conn(self, gw=None):
        return http.client.HTTPConnection("127.0.0.1", (gw or self.gw).port, timeout=30)

    def test_1_big_file_64mib(self):
        out = harness.tmpdir("big") / "big64.bin"
        rc, _, err = harness.curl("-f", "-o", out, self.gw.base + "/big64.bin", max_time=60)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.stat().st_size, 64 * MIB)
        self.assertEqual(harness.sha256_file(out), self.big_sha)
        print(f"\n[rss] after a 64 MiB download: gateway peak {self.gw.peak_rss_kib()} KiB, "
              f"serve peak {self.serve.peak_rss_kib()} KiB (now {self.gw.rss_kib()} / "
              f"{self.serve.rss_kib()} KiB)", file=sys.stderr)

    def test_2_fifty_concurrent(self):
        paths = ["/two.bin" if i % 5 == 0 else p for i, p in enumerate(
            ["/small.txt", "/file.bin", "/big.nar", "/index.html", "/nar/abc.nar.xz"] * 10)]
        self.assertEqual(len(paths), 50)
        want = {p: hashlib.sha256(self.tree.files[p]).hexdigest() for p in set(paths)}
        barrier = threading.Barrier(50, timeout=20)

        def one(path):
            c = self.conn()
            try:
                c.connect()
                barrier.wait()
                c.request("GET", path)
                r = c.getresponse()
                body = r.read()
                return (path, r.status, r.getheader("Content-Length"),
                        hashlib.sha256(body).hexdigest())
            finally:
                c.close()

        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            got = list(pool.map(one, paths))
        self.assertEqual(got, [(p, 200, str(len(self.tree.files[p])), want[p]) for p in paths])

    def test_3_no_leaked_subscriptions(self):
        # warm up both gateways and serve, then take the baseline
        for gw in (self.gw, self.gw_none):
            c = self.conn(gw)
            c.request("GET", "/small.txt")
            c.getresponse().read()
            c.close()
        baseline = self.nats.subsz()

        c = self.conn()
        c.request("HEAD", "/small.txt")
        r = c.getresponse()
        r.read()
        etag = r.getheader("ETag")
        c.close()
        files = ["/small.txt", "/file.bin", "/big.nar", "/index.html", "/d/", "/a%20b.txt",
                 "/nar/abc.nar.xz", "/abc.narinfo", "/nix-cache-info"]
        upload = rand_bytes(2 * MIB, 7)

        def plan(i):
            """(gateway, method, target, headers, body, status, body expected)."""
            if i % 50 == 7:
                return (self.gw, "POST", "/upload.bin", {}, upload, 405, NOT_ALLOWED)
            if i % 20 == 3:
                return (self.gw_none, "GET", "/small.txt", {}, None, 503, NO_RESPONDERS)
            if i % 10 == 5:
                return (self.gw, "GET", f"/missing-{i}.txt", {}, None, 404, NOT_FOUND)
            if i % 10 == 1:
                return (self.gw, "HEAD", "/file.bin", {}, None, 200, b"")
            if i % 25 == 9:
                return (self.gw, "GET", "/small.txt", {"If-None-Match": etag}, None, 304, b"")
            if i % 25 == 11:
                return (self.gw, "GET", "/big.nar", {"Range": "bytes=100-199"}, None, 206,
                        self.tree.files["/big.nar"][100:200])
            p = files[i % len(files)]
            key = {"/d/": "/d/index.html", "/a%20b.txt": "/a b.txt"}.get(p, p)
            return (self.gw, "GET", p, {}, None, 200, self.tree.files[key])

        total, nthreads = 2000, 4
        errors = []
        statuses = collections.Counter()
        lock = threading.Lock()

        def worker(k):
            conns = {}
            try:
                for i in range(k, total, nthreads):
                    gw, method, target, headers, body, status, want = plan(i)
                    c = conns.get(gw.port)
                    if c is None:
                        c = conns[gw.port] = self.conn(gw)
                    # no retry: the gateway's idle timeout (60 s) never closes these
                    c.request(method, target, body=body, headers=headers)
                    r = c.getresponse()
                    got = r.read()
                    if r.will_close:
                        c.close()
                        conns.pop(gw.port)
                    problems = []
                    if r.status != status:
                        problems.append(f"status {r.status} != {status}")
                    if got != want:
                        problems.append(f"body {len(got)} bytes sha {harness.sha256_bytes(got)[:12]}"
                                        f" != {len(want)} bytes")
                    leaks = wire_leaks(r.getheaders())
                    if leaks:
                        problems.append(f"wire headers {leaks}")
                    with lock:
                        statuses[r.status] += 1
                        if problems:
                            errors.append(f"#{i} {method} {target}: " + "; ".join(problems))
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(f"worker {k}: {type(e).__name__}: {e}")
            finally:
                for c in conns.values():
                    c.close()

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(nthreads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(50)
        self.assertEqual(errors[:20], [])
        want_statuses = collections.Counter(plan(i)[5] for i in range(total))
        self.assertEqual(sum(statuses.values()), total)
        self.assertEqual(statuses, want_statuses)

        try:
            harness.wait_until(lambda: self.nats.subsz() == baseline, 3, 0.05,
                               "subscription count back at the baseline")
        except TimeoutError:
            pass
        self.assertEqual(self.nats.subsz(), baseline,
                         f"subscriptions before {baseline}, after {total} requests "
                         f"{self.nats.subsz()}")

    def test_9_still_answers_then_exits_0(self):
        c = self.conn()
        c.request("GET", "/file.bin")
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertBytesEqual(r.read(), self.tree.files["/file.bin"])
        c.close()
        c = self.conn(self.gw_none)
        c.request("GET", "/file.bin")
        r = c.getresponse()
        self.assertEqual(r.status, 503)
        self.assertBytesEqual(r.read(), NO_RESPONDERS)
        c.close()
        # SIGTERM: each exits 0 within the grace period, without a sanitizer report
        for p in (self.gw_none, self.gw, self.serve):
            self.assertEqual(p.stop(check=True), 0, p.name)


if __name__ == "__main__":
    harness.main()
