"""Uploading a Nix binary cache over NATS: `nats-http serve --dir --writable`
takes nix's PUTs (Expect: 100-continue, after HEAD existence checks) through
the gateway and writes each file atomically; a read-only server answers 405
and nix fails; an upload that breaks off leaves nothing behind.

The commands are those of docs/nix-binary-cache.md."""

import hashlib
import signal
import socket
import subprocess

import harness
import nixenv
from nixenv import NIX, tmp_files


class NixUploadTest(harness.E2ETestCase):
    timeout = 300

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.nix = nixenv.Nix("nix-publisher")
        cls.src = cls.nix.store("src")
        cls.closure = nixenv.make_closure(cls.nix, cls.src)
        cls.sec, cls.pub = cls.nix.generate_key(harness.tmpdir("key"))

    def publisher(self) -> nixenv.Nix:
        """The machine that uploads: its own nix state (no cached cache-info)."""
        return nixenv.Nix("nix-publisher")

    def agent(self) -> nixenv.Nix:
        return nixenv.Nix("nix-agent", extra_conf=f"trusted-public-keys = {self.pub}\n")

    def start(self, cache, *serve_args, gw_args=()):
        nats = harness.Nats()
        serve = harness.serve(nats, "cache", cache, *serve_args)
        gw = harness.gateway(nats, "cache", *gw_args)
        return serve, gw

    def nar_name(self, path: str, ext: str = ".nar") -> str:
        return f"nar/{nixenv.GEN.nix32(hashlib.sha256(self.closure.nars[path]).digest())}{ext}"

    def test_upload_then_fetch(self):
        c = self.closure
        cache = harness.tmpdir("cache") / "cache"
        cache.mkdir()
        serve, gw = self.start(cache, "--writable", "/")
        pub = self.publisher()
        r = pub.ok(NIX, "copy", "--store", self.src,
                   "--to", f"{gw.base}?secret-key={self.sec}&compression=none", c.top)
        self.assertIn("copying 3 paths", r.err)

        hashes = [p.split("/")[-1].split("-")[0] for p in c.paths]
        self.assertEqual(nixenv.cache_files(cache), sorted(
            ["nix-cache-info"] + [f"{h}.narinfo" for h in hashes]
            + [self.nar_name(p) for p in c.paths]))
        self.assertEqual((cache / "nix-cache-info").read_text(), "StoreDir: /nix/store\n")
        for p in c.paths:
            self.assertBytesEqual((cache / self.nar_name(p)).read_bytes(), c.nars[p])
        slog, glog = serve.log_text(), gw.log_text()
        self.assertIn("PUT /nix-cache-info -> 201 (21 bytes received)", slog)
        big = self.nar_name(c.big)
        self.assertIn(f"PUT /{big} -> 201 ({len(c.nars[c.big])} bytes received)", slog)
        # nix asked first whether each was there; it was not.
        entries = harness.access_entries(glog)
        for h in hashes:
            target = f"/{h}.narinfo"
            seq = [(e["method"], e["status"]) for e in entries if e["target"] == target]
            self.assertIn(("HEAD", "404"), seq, target)
            self.assertIn(("PUT", "201"), seq, target)
            self.assertLess(seq.index(("HEAD", "404")), seq.index(("PUT", "201")), seq)
        self.assertTrue(harness.access_entries(glog, method="PUT", target=f"/{big}", status="201"))

        # Another machine fetches it back, checking our signatures.
        agent = self.agent()
        store = agent.store("fetched")
        agent.ok(NIX, "copy", "--from", gw.base, "--to", store, c.top)
        agent.ok(NIX, "store", "verify", "--store", store, "-r", c.top)
        for p in c.paths:
            self.assertEqual(hashlib.sha256(nixenv.file_in_store(store, p).read_bytes()).digest(),
                             hashlib.sha256(c.contents[p]).digest(), p)

        # Uploading again: every narinfo is there (HEAD 200), nothing is sent.
        before = serve.log_size()
        pub.ok(NIX, "copy", "--store", self.src,
               "--to", f"{gw.base}?secret-key={self.sec}&compression=none", c.top)
        self.assertNotIn("PUT", serve.log_text()[before:])
        self.assertEqual(len(nixenv.cache_files(cache)), 7)

    def test_prefix_and_default_compression(self):
        c = self.closure
        root = harness.tmpdir("cache-root")
        (root / "uploads").mkdir()
        serve, gw = self.start(root, "--writable", "/uploads/")
        pub = self.publisher()
        # The guide's command: xz, the default, below the writable prefix.
        pub.ok(NIX, "copy", "--store", self.src, "--to", f"{gw.base}/uploads?secret-key={self.sec}",
               c.small)
        files = nixenv.cache_files(root)
        h = c.small.split("/")[-1].split("-")[0]
        self.assertIn(f"uploads/{h}.narinfo", files)
        self.assertEqual(len([f for f in files if f.endswith(".nar.xz")]), 1, files)
        agent = self.agent()
        store = agent.store("fetched")
        agent.ok(NIX, "copy", "--from", f"{gw.base}/uploads", "--to", store, c.small)
        self.assertEqual(nixenv.file_in_store(store, c.small).read_bytes(), c.contents[c.small])
        # Outside the prefix nothing is writable: at the root there is no
        # nix-cache-info, nix tries to PUT one, gets 405 and gives up.
        r = pub.run(NIX, "copy", "--store", self.src, "--to", f"{gw.base}?secret-key={self.sec}",
                    c.small)
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn(f"'{gw.base}' does not appear to be a binary cache", r.err)
        self.assertIn("PUT /nix-cache-info -> 405", serve.log_text())
        rc, out, err = harness.curl("-i", "-X", "PUT", "--data-binary", "x", f"{gw.base}/elsewhere")
        self.assertEqual(rc, 0, err)
        resp, _ = harness.parse_http_response(out)
        self.assertEqual(resp.status, 405)
        self.assertEqual(resp.header("Allow"), "GET, HEAD")
        self.assertEqual(resp.body, b"405 Method Not Allowed\n")
        self.assertNotIn("elsewhere", nixenv.cache_files(root))

    def test_read_only_server_refuses(self):
        c = self.closure
        cache = harness.tmpdir("cache-ro") / "cache"
        cache.mkdir()
        (cache / "nix-cache-info").write_text("StoreDir: /nix/store\n")
        serve, gw = self.start(cache)
        r = self.publisher().run(NIX, "copy", "--store", self.src,
                                 "--to", f"{gw.base}?secret-key={self.sec}&compression=none", c.top)
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("HTTP error 405 ('Method Not Allowed')", r.err)
        self.assertEqual(nixenv.cache_files(cache), ["nix-cache-info"])
        self.assertRegex(serve.log_text(), r"PUT /nar/\S+\.nar -> 405 ")
        rc, out, err = harness.curl("-i", "-X", "PUT", "--data-binary", "x",
                                    f"{gw.base}/nix-cache-info")
        self.assertEqual(rc, 0, err)
        resp, _ = harness.parse_http_response(out)
        self.assertEqual((resp.status, resp.header("Allow")), (405, "GET, HEAD"))
        self.assertEqual(resp.body, b"405 Method Not Allowed\n")
        self.assertEqual((cache / "nix-cache-info").read_text(), "StoreDir: /nix/store\n")

    def test_broken_uploads_leave_nothing(self):
        big = self.closure.contents[self.closure.big]
        src = harness.tmpdir("upload-src") / "big.bin"
        src.write_bytes(big)
        for proto in ("2", "1"):
            with self.subTest(protocol=proto):
                cache = harness.tmpdir(f"cache-cut-v{proto}")
                (cache / "nar").mkdir()
                (cache / "nar" / "old.bin").write_bytes(b"the old file\n")
                # v1 cannot tell the server that the client left: the server's
                # idle timeout ends that upload. The gateway's is as short: its
                # watch sees a client's FIN or reset on an upload waiting for
                # credit, but a FIN still queued behind unsent bytes in the
                # client's kernel reaches it only by reading, so such an upload
                # ends at that timeout, and the default 30 s would outlive the stop.
                serve, gw = self.start(cache, "--writable", "/", "--idle-timeout", "2",
                                       gw_args=("--protocol", proto, "--idle-timeout", "2"))
                # 1. The client goes away mid-upload; meanwhile readers see the old file.
                curl = subprocess.Popen(
                    [harness.CURL, "-sS", "--noproxy", "*", "--limit-rate", "2M", "-T", str(src),
                     f"{gw.base}/nar/old.bin"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    harness.wait_until(lambda: any(p.stat().st_size > 1 << 20
                                                   for p in tmp_files(cache)), 30, 0.05,
                                       "a temporary file with more than 1 MiB")
                    rc, out, err = harness.curl("-f", f"{gw.base}/nar/old.bin")
                    self.assertEqual((rc, out), (0, b"the old file\n"), err)
                finally:
                    curl.send_signal(signal.SIGKILL)
                    curl.wait()
                harness.wait_until(lambda: not tmp_files(cache), 20, 0.05,
                                   "the temporary file removed")
                self.assertEqual(nixenv.cache_files(cache), ["nar/old.bin"])
                self.assertEqual((cache / "nar" / "old.bin").read_bytes(), b"the old file\n")
                self.assertRegex(serve.log_text(),
                                 r"PUT /nar/old\.bin: (the client went away|the body broke off)"
                                 r" after \d+ bytes.*; discarded")
                # 2. A body short of its Content-Length, then the connection closes.
                with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
                    s.sendall(b"PUT /nar/short.bin HTTP/1.1\r\nHost: cache\r\n"
                              b"Content-Length: 3000000\r\n\r\n" + big[:1500000])
                    harness.wait_until(lambda: tmp_files(cache), 20, 0.05, "the upload started")
                harness.wait_until(lambda: not tmp_files(cache), 20, 0.05,
                                   "the temporary file removed")
                self.assertEqual(nixenv.cache_files(cache), ["nar/old.bin"])
                # 3. And a whole one still works.
                rc, out, err = harness.curl("-f", "-T", str(src), f"{gw.base}/nar/new.bin")
                self.assertEqual(rc, 0, err)
                self.assertEqual(hashlib.sha256((cache / "nar" / "new.bin").read_bytes()).digest(),
                                 hashlib.sha256(big).digest())
                self.assertEqual(tmp_files(cache), [])
                serve.stop(check=True)
                gw.stop(check=True)


if __name__ == "__main__":
    harness.main()
