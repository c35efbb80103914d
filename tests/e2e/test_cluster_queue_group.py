"""Queue groups (issue 6, item 1): three `serve --group g` instances behind
one gateway share the requests, and killing one (SIGKILL) mid-download
aborts only the transfers it was sending; new requests go to the other two
with no error.

    curl x N -> nats-http gateway -> nats-server -> serve s1 | s2 | s3 (queue group g)

Each instance serves a directory of its own: who.txt names the instance, and
big.bin has a size of its own (64 MiB + 1, + 2, + 3), so a download's
Content-Length says which instance sends it.
"""

import collections
import concurrent.futures
import http.client

import harness
import test_cluster_common as cc
import test_flow_common as fc

MIB = cc.MIB
BASE = 64 * MIB
NAMES = ("s1", "s2", "s3")


class QueueGroupTest(harness.E2ETestCase):
    timeout = 240

    def start(self, idle_timeout: int = 3):
        self.nats = harness.Nats()
        self.serves = {}
        for i, name in enumerate(NAMES, 1):
            d = cc.instance_dir(name, big=BASE + i)
            self.serves[name] = harness.serve(self.nats, cc.SUBJECT, d, group="g", name=name)
        self.nats.wait_subs(cc.SUBJECT + ".probe", 3)
        # The gateway gives up on a body that stops for --idle-timeout
        # seconds: that is how it learns that a killed server sends no more.
        self.gw = harness.gateway(self.nats, cc.SUBJECT, "--idle-timeout", str(idle_timeout))

    def test_1_300_requests_shared(self):
        self.start()

        def batch(n):
            c = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=10)
            got = []
            for _ in range(n):
                status, _, body = cc.get(self.gw.port, "/who.txt", conn=c)
                got.append((status, body))
            c.close()
            return got

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            results = [r for part in pool.map(batch, [50] * 6) for r in part]
        self.assertEqual(len(results), 300)
        served = collections.Counter()
        for status, body in results:
            self.assertEqual(status, 200, body[:200])
            served[body.decode().strip()] += 1
        self.assertEqual(sum(served.values()), 300)
        self.assertEqual(sorted(served), sorted(NAMES), served)
        for name in NAMES:
            self.assertGreater(served[name], 0, served)
        print(f"\n[queue group] 300 requests: {dict(served)}", flush=True)

    def test_2_kill_one_mid_download(self):
        self.start()
        hdr = harness.tmpdir("heads")
        downloads = []   # (Download, head dump path)

        def size_owner(path):
            cl = cc.header_value(path, "Content-Length")
            return NAMES[int(cl) - BASE - 1] if cl else None

        def add():
            path = hdr / f"d{len(downloads)}.txt"
            dl = fc.Download(self.gw.base + "/big.bin", "--limit-rate", "4M", "-D", str(path),
                             max_time=120)
            downloads.append((dl, path))
            dl.wait_received(1, 30)

        # Downloads until one instance sends at least one and another at least one.
        while True:
            add()
            owners = collections.Counter(size_owner(p) for _, p in downloads)
            if len(downloads) >= 4 and len(owners) >= 2:
                break
            self.assertLess(len(downloads), 20, owners)
        victim = owners.most_common()[-1][0]   # the instance with the fewest
        survivors = [n for n in NAMES if n != victim]
        print(f"\n[queue group] downloads per instance {dict(owners)}; killing {victim}",
              flush=True)
        self.serves[victim].kill()
        # nats-server drops a killed client's subscription at once (its socket closed).
        harness.wait_until(lambda: self.nats.subs_matching(cc.SUBJECT + ".probe") == 2, 10, 0.05,
                           "the killed instance's subscription gone")

        # New requests: all succeed, all from the survivors.
        served = collections.Counter()
        for _ in range(60):
            served[cc.who(self.gw.port)] += 1
        self.assertEqual(sum(served.values()), 60)
        self.assertEqual(set(served) - set(survivors), set(), served)

        # The victim's transfers abort visibly (short of Content-Length: curl
        # exit 18); every other one completes with the right bytes.
        for dl, path in downloads:
            owner = size_owner(path)
            size = BASE + NAMES.index(owner) + 1
            rc, got, sha, err = dl.wait(150)
            with self.subTest(owner=owner):
                if owner == victim:
                    self.assertEqual(rc, 18, err)
                    self.assertLess(got, size)
                else:
                    self.assertEqual(rc, 0, err)
                    self.assertEqual(got, size)
                    self.assertEqual(sha, fc.zero_sha256(size))


if __name__ == "__main__":
    harness.main()
