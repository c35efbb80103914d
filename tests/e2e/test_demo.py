"""The README's first command works, and the sample Nix cache is consistent
when fetched through gateway -> NATS -> serve."""

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess

import harness

EXAMPLES = harness.REPO_ROOT / "examples"


def _gen_module():
    spec = importlib.util.spec_from_file_location(
        "gen_example_cache", harness.REPO_ROOT / "scripts" / "gen-example-cache.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def parse_narinfo(text: str) -> dict:
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


class DemoScriptTest(harness.E2ETestCase):
    timeout = 90

    def test_demo_once(self):
        env = dict(os.environ, NATSHTTP_SKIP_SETUP="1", NATSHTTP_BIN=harness.BIN)
        env.pop("NATS_URL", None)
        r = subprocess.run(["bash", str(harness.REPO_ROOT / "scripts" / "demo.sh"), "--once"],
                           stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=80)
        out = r.stdout.decode("utf-8", "replace")
        err = r.stderr.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 0, f"stdout:\n{out}\nstderr:\n{err}")
        self.assertRegex(out, r"Gateway: +http://127\.0\.0\.1:\d+")
        self.assertIn("<h1>natshttp</h1>", out)
        self.assertEqual(out.count("StoreDir: /nix/store"), 2, out)   # curl and request
        self.assertIn("Stopped nats-server, nats-http serve, nats-http gateway.", out)
        narinfo = parse_narinfo(next((EXAMPLES / "cache").glob("*.narinfo")).read_text())
        store_path = narinfo["StorePath"]
        if shutil.which("nix"):
            # nix fetched the sample cache's store path over NATS (scripts/setup.sh
            # installs nix-bin, so in CI this branch always runs).
            self.assertIn(f"copying path '{store_path}' from 'http://127.0.0.1:", out)
            self.assertRegex(out, rf"method=GET target=/cache/{re.escape(narinfo['URL'])} "
                                  rf"status=200 in=0 out={narinfo['FileSize']} ")
            self.assertIn("      Hello from a Nix store path served over NATS.\n", out)
            self.assertIn(f"nix fetched store path {store_path} through NATS.", out)
        else:
            self.assertIn("nix is not installed (Debian: nix-bin): skipping the nix fetch", out)


class SampleCacheTest(harness.E2ETestCase):
    timeout = 60

    def test_narinfo_matches_nar_through_gateway(self):
        gen = _gen_module()
        nats = harness.Nats()
        harness.serve(nats, "demo", EXAMPLES)
        gw = harness.gateway(nats, "demo")

        rc, info, err = harness.curl("-f", f"{gw.base}/cache/nix-cache-info")
        self.assertEqual(rc, 0, err)
        self.assertIn(b"StoreDir: /nix/store", info)

        narinfos = sorted((EXAMPLES / "cache").glob("*.narinfo"))
        self.assertEqual(len(narinfos), 1)
        rc, body, err = harness.curl("-f", f"{gw.base}/cache/{narinfos[0].name}")
        self.assertEqual(rc, 0, err)
        ni = parse_narinfo(body.decode())
        self.assertTrue(ni["StorePath"].startswith(
            "/nix/store/" + narinfos[0].name.removesuffix(".narinfo") + "-"))

        rc, nar, err = harness.curl("-f", f"{gw.base}/cache/{ni['URL']}")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(nar), int(ni["NarSize"]))
        self.assertEqual(len(nar), int(ni["FileSize"]))
        self.assertEqual("sha256:" + gen.nix32(hashlib.sha256(nar).digest()), ni["NarHash"])
        self.assertTrue(nar.startswith(gen.nar_str(b"nix-archive-1")))

        rc, out, err = harness.request(nats, f"nats+http://demo/cache/{ni['URL']}")
        self.assertEqual(rc, 0, err)
        self.assertBytesEqual(out, nar)

    def test_site_pages(self):
        nats = harness.Nats()
        harness.serve(nats, "demo", EXAMPLES)
        gw = harness.gateway(nats, "demo")
        rc, page, err = harness.curl("-f", f"{gw.base}/site/index.html")
        self.assertEqual(rc, 0, err)
        self.assertBytesEqual(page, (EXAMPLES / "site" / "index.html").read_bytes())
        link = re.search(rb'href="(hello\.txt)"', page)
        self.assertIsNotNone(link)
        rc, txt, err = harness.curl("-f", f"{gw.base}/site/{link.group(1).decode()}")
        self.assertEqual(rc, 0, err)
        self.assertBytesEqual(txt, (EXAMPLES / "site" / "hello.txt").read_bytes())


if __name__ == "__main__":
    harness.main()
