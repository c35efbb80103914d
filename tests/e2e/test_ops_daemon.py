"""nats-http as a daemon: the HTTPS gateway (checked with curl --cacert), the
access log of gateway and serve (fields, the serving instance, v1 peers
untouched), --log-file with SIGHUP after logrotate's rename, the --config
file (and the command line over it, it over NATS_URL), NATS_URL, and --help
against docs/cli.md."""

import os
import pathlib
import re
import signal

import harness
import peers
import test_ops_common as common

SUBJ = "ops"
ROOT = pathlib.Path(__file__).resolve().parents[2]


def wait_in_file(path: pathlib.Path, pattern: str, timeout: float = 10) -> re.Match:
    rx = re.compile(pattern, re.M)

    def found():
        try:
            return rx.search(path.read_text(errors="replace"))
        except FileNotFoundError:
            return None
    return harness.wait_until(found, timeout, 0.02, f"/{pattern}/ in {path}")


class HttpsTest(harness.E2ETestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pki = common.Pki(harness.tmpdir("pki"))
        cls.cert, cls.key = cls.pki.issue("gateway", "serverAuth")
        cls.nats = harness.Nats()
        cls.echo = peers.echo(cls.nats, SUBJ)
        cls.gw = harness.gateway(cls.nats, SUBJ, "--https-cert", cls.cert, "--https-key", cls.key)

    def test_ready_line_says_https(self):
        self.assertTrue(self.gw.base.startswith("https://127.0.0.1:"), self.gw.base)

    def test_curl_with_the_ca(self):
        rc, body, err = harness.curl("--cacert", self.pki.ca, self.gw.base + "/a/b?x=1")
        self.assertEqual(rc, 0, err)
        got = peers.echo_json(body)
        self.assertEqual(got["method"], "GET")
        self.assertEqual(peers.headers_named(got, "X-Forwarded-Proto", "forwarding"), ["https"])
        self.assertEqual(peers.headers_named(got, "X-Forwarded-For", "forwarding"), ["127.0.0.1"])

    def test_upload_over_https(self):
        data = bytes(range(256)) * 4096   # 1 MiB: several NATS messages
        path = self.tmpdir("up") / "body.bin"
        path.write_bytes(data)
        rc, body, err = harness.curl("--cacert", self.pki.ca, "-X", "PUT", "--data-binary",
                                     f"@{path}", self.gw.base + "/up")
        self.assertEqual(rc, 0, err)
        got = peers.echo_json(body)
        self.assertEqual(got["length"], len(data), got)
        self.assertEqual(got["sha256"], harness.sha256_bytes(data), got)

    def test_curl_without_the_ca_refuses(self):
        rc, _, err = harness.curl(self.gw.base + "/x")
        self.assertEqual(rc, 60, err)   # CURLE_PEER_FAILED_VERIFICATION

    def test_plain_http_to_the_https_port_gets_nothing(self):
        rc, _, err = harness.curl(f"http://127.0.0.1:{self.gw.port}/x", max_time=5)
        self.assertNotEqual(rc, 0, err)

    def test_key_that_does_not_match_fails_clearly(self):
        _, other_key = self.pki.issue("other", "serverAuth")
        rc, _, err = harness.nats_http("gateway", "--subject", SUBJ, "--listen", "127.0.0.1:0",
                                       "--server", self.nats.url, "--https-cert", self.cert,
                                       "--https-key", other_key, timeout=30)
        self.assertEqual(rc, 1, err)
        self.assertIn("cannot start", err)
        self.assertIn("HTTPS certificate and key are unusable", err)

    def test_missing_key_file(self):
        missing = self.tmpdir("k") / "none.key"
        rc, _, err = harness.nats_http("gateway", "--subject", SUBJ, "--server", self.nats.url,
                                       "--https-cert", self.cert, "--https-key", missing)
        self.assertEqual(rc, 1, err)
        self.assertIn(f"cannot read --https-key {missing}: No such file or directory", err)


class AccessLogTest(harness.E2ETestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = harness.tmpdir("root")
        cls.files = common.tree(cls.root)
        cls.nats = harness.Nats()
        cls.srv = harness.serve(cls.nats, SUBJ, cls.root, "--name", "files-1")
        cls.gw = harness.gateway(cls.nats, SUBJ)
        cls.gw1 = harness.gateway(cls.nats, SUBJ, "--protocol", "1", name="gateway-v1")

    def entry(self, proc, since, **match):
        def one():
            got = harness.access_entries(proc.log_text()[since:], **match)
            return got[0] if len(got) == 1 else None
        return harness.wait_until(one, 10, 0.02, f"one access line {match} in {proc.name}")

    def test_gateway_and_serve_lines(self):
        g0, s0 = len(self.gw.log_text()), len(self.srv.log_text())
        rc, body, err = harness.curl(self.gw.base + "/dir/data.bin?v=1")
        self.assertEqual(rc, 0, err)
        self.assertBytesEqual(body, self.files["/dir/data.bin"])
        g = self.entry(self.gw, g0, target="/dir/data.bin?v=1")
        self.assertEqual(g["component"], "gateway")
        self.assertEqual(g["client"], "127.0.0.1")
        self.assertEqual(g["method"], "GET")
        self.assertEqual(g["status"], "200")
        self.assertEqual(g["in"], "0")
        self.assertEqual(g["out"], str(len(self.files["/dir/data.bin"])))
        self.assertRegex(g["dur_ms"], r"^\d+$")
        self.assertEqual(g["instance"], "files-1")
        self.assertTrue(g["subject"].startswith(SUBJ + "."), g)
        self.assertNotIn("end", g)
        s = self.entry(self.srv, s0, target="/dir/data.bin?v=1")
        self.assertEqual(s["component"], "server")
        self.assertEqual(s["client"], "127.0.0.1")   # the gateway's X-Forwarded-For
        self.assertEqual(s["status"], "200")
        self.assertEqual(s["out"], g["out"])
        self.assertEqual(s["subject"], g["subject"])
        self.assertEqual(s["instance"], "files-1")
        self.assertEqual(s["proto"], "2")

    def test_upload_counts_bytes_in(self):
        g0 = len(self.gw.log_text())
        rc, _, err = harness.curl("-o", os.devnull, "-w", "%{http_code}", "-X", "POST",
                                  "--data-binary", "x" * 5000, self.gw.base + "/hello.txt")
        self.assertEqual(rc, 0, err)
        g = self.entry(self.gw, g0, method="POST", target="/hello.txt")
        self.assertEqual(g["in"], "5000")
        self.assertEqual(g["status"], "405")

    def test_v1_gateway_gets_no_instance(self):
        g0, s0 = len(self.gw1.log_text()), len(self.srv.log_text())
        rc, out, err = harness.curl("-i", self.gw1.base + "/hello.txt")
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.endswith(self.files["/hello.txt"]), out)
        self.assertNotIn(b"natshttp-instance", out.lower())
        g = self.entry(self.gw1, g0, target="/hello.txt")
        self.assertEqual(g["instance"], "-")
        self.assertEqual(g["status"], "200")
        s = self.entry(self.srv, s0, target="/hello.txt")
        self.assertEqual(s["proto"], "1")
        self.assertEqual(s["instance"], "files-1")

    def test_v2_response_does_not_leak_the_instance_header(self):
        rc, out, err = harness.curl("-i", self.gw.base + "/hello.txt")
        self.assertEqual(rc, 0, err)
        self.assertNotIn(b"natshttp-instance", out.lower())

    def test_no_responders_line(self):
        gw = harness.gateway(self.nats, "nobody", name="gateway-nobody")
        rc, code, err = harness.curl("-o", os.devnull, "-w", "%{http_code}", gw.base + "/q")
        self.assertEqual(code, b"503")
        g = self.entry(gw, 0, target="/q")
        self.assertEqual(g["status"], "503")
        self.assertEqual(g["instance"], "-")
        self.assertTrue(g["subject"].startswith("nobody."), g)

    def test_quoting_keeps_one_value(self):
        # a target with '=' and '"' stays one quoted logfmt value
        g0 = len(self.gw.log_text())
        rc, _, err = harness.curl("-o", os.devnull, self.gw.base + '/a=b?q=%22x%22&r="y"')
        self.assertEqual(rc, 0, err)
        g = self.entry(self.gw, g0, method="GET", target='/a=b?q=%22x%22&r="y"')
        self.assertEqual(g["status"], "404")


class LogFileTest(harness.E2ETestCase):

    def test_sighup_reopens_after_rename(self):
        root = self.tmpdir("root")
        files = common.tree(root)
        nats = harness.Nats()
        logs = self.tmpdir("logs")
        glog, slog = logs / "gateway.log", logs / "serve.log"
        srv = harness.nats_http_proc("serve", "--subject", SUBJ, "--dir", root, "--server",
                                     nats.url, "--log-file", slog, ready=None)
        wait_in_file(slog, r"\bready\b")
        gw = harness.Proc([harness.BIN, "gateway", "--subject", SUBJ, "--listen", "127.0.0.1:0",
                           "--server", nats.url, "--log-file", glog], name="gateway",
                          ready=None, expect_exit=0, sanitizer_check=True)
        m = wait_in_file(glog, harness.GATEWAY_READY)
        base = f"http://127.0.0.1:{m.group('port')}"
        self.assertEqual(gw.log_text(), "")   # nothing left on stderr

        rc, body, _ = harness.curl(base + "/hello.txt?n=1")
        self.assertEqual(body, files["/hello.txt"])
        wait_in_file(glog, r'access .*target="/hello\.txt\?n=1" status=200')
        wait_in_file(slog, r'access .*target="/hello\.txt\?n=1" status=200')

        # logrotate: rename, then SIGHUP
        os.rename(glog, logs / "gateway.log.1")
        os.rename(slog, logs / "serve.log.1")
        gw.signal(signal.SIGHUP)
        srv.signal(signal.SIGHUP)
        wait_in_file(glog, rf"info log: reopened {re.escape(str(glog))}$")
        wait_in_file(slog, rf"info log: reopened {re.escape(str(slog))}$")

        rc, body, _ = harness.curl(base + "/hello.txt?n=2")
        self.assertEqual(body, files["/hello.txt"])
        wait_in_file(glog, r'access .*target="/hello\.txt\?n=2" status=200')
        wait_in_file(slog, r'access .*target="/hello\.txt\?n=2" status=200')
        old_g = (logs / "gateway.log.1").read_text()
        old_s = (logs / "serve.log.1").read_text()
        self.assertEqual(len(harness.access_entries(old_g, target="/hello.txt?n=1")), 1, old_g)
        self.assertEqual(harness.access_entries(old_g, target="/hello.txt?n=2"), [], old_g)
        self.assertEqual(harness.access_entries(old_s, target="/hello.txt?n=2"), [], old_s)
        self.assertNotIn("n=1", glog.read_text())
        gw.stop(check=True)
        srv.stop(check=True)
        self.assertRegex(glog.read_text(), r"info gateway: stopping: ")

    def test_unwritable_log_file(self):
        d = self.tmpdir("x")
        rc, _, err = harness.nats_http("request", "--log-file", d / "no" / "such" / "dir.log",
                                       "nats+http://x/")
        self.assertEqual(rc, 1, err)
        self.assertIn("cannot open --log-file", err)


class ConfigTest(harness.E2ETestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = harness.tmpdir("root")
        cls.files = common.tree(cls.root)
        cls.nats = harness.Nats('authorization { users = [ {user: "svc", password: "two words"} ] }')
        cls.auth = ["--user", "svc", "--password", "two words"]
        cls.srv = harness.serve(cls.nats, SUBJ, cls.root, *cls.auth)

    def conf(self, text: str) -> pathlib.Path:
        p = self.tmpdir("conf") / "nats-http.conf"
        p.write_text(text)
        return p

    def get(self, gw, path="/hello.txt"):
        rc, body, err = harness.curl(gw.base + path)
        self.assertEqual(rc, 0, err)
        return body

    def test_gateway_from_config_alone(self):
        conf = self.conf(f"# a gateway\n\n  subject {SUBJ}\nlisten = 127.0.0.1:0\n"
                         f"server   {self.nats.url}\nuser = svc\n"
                         f'password = "two words"\nlog-level debug\n  # indented comment\n')
        gw = harness.Gateway([harness.BIN, "gateway", "--config", conf], name="gateway",
                             expect_exit=0, sanitizer_check=True)
        self.assertBytesEqual(self.get(gw), self.files["/hello.txt"])
        self.assertRegex(gw.log_text(), r" debug ")   # log-level came from the file

    def test_command_line_wins_over_file(self):
        conf = self.conf(f"subject wrong\nserver nats://127.0.0.1:1\nuser svc\n"
                         f"password nope\n")
        gw = harness.Gateway([harness.BIN, "gateway", "--config", conf, "--subject", SUBJ,
                              "--listen", "127.0.0.1:0", "--server", self.nats.url,
                              "--password", "two words"], name="gateway", expect_exit=0,
                             sanitizer_check=True)
        self.assertBytesEqual(self.get(gw), self.files["/hello.txt"])
        self.assertIn(f"subject={SUBJ}", gw.log_text())

    def test_file_wins_over_nats_url(self):
        conf = self.conf(f"server {self.nats.url}\nuser svc\npassword two words\n")
        rc, out, err = harness.nats_http("request", "--config", conf,
                                         f"nats+http://{SUBJ}/dir/data.bin",
                                         env={"NATS_URL": "nats://127.0.0.1:1"})
        self.assertEqual(rc, 0, err)
        self.assertBytesEqual(out, self.files["/dir/data.bin"])

    def test_nats_url_is_the_default_server(self):
        rc, out, err = harness.nats_http("request", *self.auth, f"nats+http://{SUBJ}/hello.txt",
                                         env={"NATS_URL": self.nats.url})
        self.assertEqual(rc, 0, err)
        self.assertBytesEqual(out, self.files["/hello.txt"])
        # and it is really used: a wrong one fails
        rc, _, err = harness.nats_http("request", *self.auth, f"nats+http://{SUBJ}/hello.txt",
                                       env={"NATS_URL": "nats://127.0.0.1:1"})
        self.assertEqual(rc, 1, err)
        self.assertIn("cannot connect to NATS at nats://127.0.0.1:1", err)

    def test_server_list(self):
        # the first server is down; nats.c goes on to the next
        rc, out, err = harness.nats_http("request", *self.auth, "--server",
                                         f"nats://127.0.0.1:1,{self.nats.url}",
                                         f"nats+http://{SUBJ}/hello.txt")
        self.assertEqual(rc, 0, err)
        self.assertBytesEqual(out, self.files["/hello.txt"])

    def test_flag_and_list_options_in_the_file(self):
        conf = self.conf(f"server {self.nats.url}\nuser svc\npassword two words\n"
                         f"include true\nheader X-A: 1\n")
        rc, out, err = harness.nats_http("request", "--config", conf, "-H", "X-B: 2",
                                         f"nats+http://{SUBJ}/hello.txt")
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.startswith(b"HTTP/1.1 200 OK\r\n"), out)
        self.assertTrue(out.endswith(b"\r\n\r\n" + self.files["/hello.txt"]), out)

    def test_listen_address_checked_before_nats(self):
        # no NATS server at that URL: the bad address is what gets reported
        for listen in ("localhost:0", "999.1.1.1:5", "[::1:0"):
            rc, _, err = harness.nats_http("gateway", "--subject", SUBJ, "--listen", listen,
                                           "--server", "nats://127.0.0.1:1")
            self.assertEqual(rc, 2, f"{listen}: {err}")
            self.assertIn("--listen wants", err, listen)
            self.assertNotIn("cannot connect to NATS", err, listen)

    def test_unknown_option_names_the_line(self):
        conf = self.conf("# ok\nsubject x\nbogus 1\n")
        rc, _, err = harness.nats_http("gateway", "--config", conf)
        self.assertEqual(rc, 2, err)
        self.assertIn(f"{conf}:3: unknown option 'bogus'", err)

    def test_bad_values_in_the_file(self):
        for text, want in (("timeout soon\n", "--timeout wants a non-negative number, not 'soon'"),
                           ("list maybe\n", ":1: list wants true or false, not 'maybe'"),
                           ("subject\n", ":1: subject needs a value"),
                           ("config other.conf\n", ":1: unknown option 'config'")):
            conf = self.conf(text)
            cmd = "serve" if text.startswith("list") else "gateway"
            rc, _, err = harness.nats_http(cmd, "--config", conf)
            self.assertEqual(rc, 2, f"{text!r}: {err}")
            self.assertIn(want, err, text)

    def test_contrib_examples_are_valid(self):
        """The example config files of contrib/systemd start a daemon (with the
        paths and addresses of this machine put over them)."""
        nats = harness.Nats()
        logs = self.tmpdir("logs")
        conf = ROOT / "contrib" / "systemd"
        gw = harness.Proc([harness.BIN, "gateway", "--config", conf / "gateway.conf",
                           "--listen", "127.0.0.1:0", "--server", nats.url,
                           "--log-file", logs / "gw.log"], name="gateway", ready=None,
                          expect_exit=0, sanitizer_check=True)
        m = wait_in_file(logs / "gw.log", harness.GATEWAY_READY)
        self.assertIn("subject=demo", (logs / "gw.log").read_text())
        srv = harness.Proc([harness.BIN, "serve", "--config", conf / "serve.conf",
                            "--dir", self.root, "--server", nats.url,
                            "--log-file", logs / "serve.log"], name="serve", ready=None,
                           expect_exit=0, sanitizer_check=True)
        wait_in_file(logs / "serve.log", r"ready subject=demo group=demo-files dir=")
        rc, body, err = harness.curl(f"http://127.0.0.1:{m.group('port')}/hello.txt")
        self.assertEqual(rc, 0, err)
        self.assertBytesEqual(body, self.files["/hello.txt"])
        gw.stop(check=True)
        srv.stop(check=True)

    def test_missing_config_file(self):
        missing = self.tmpdir("c") / "none.conf"
        rc, _, err = harness.nats_http("serve", "--config", missing)
        self.assertEqual(rc, 2, err)
        self.assertIn(f"cannot read --config {missing}: No such file or directory", err)


class HelpTest(harness.E2ETestCase):
    """Every option --help lists is documented in docs/cli.md, in the
    subcommand's own section."""

    def test_docs_cover_every_option(self):
        doc = (ROOT / "docs" / "cli.md").read_text()
        sections = dict(re.findall(r"^## `nats-http (\w+)`\n(.*?)(?=^## |\Z)", doc, re.S | re.M))
        for cmd in ("gateway", "serve", "request"):
            rc, out, err = harness.nats_http(cmd, "--help")
            self.assertEqual(rc, 0, err)
            opts = re.findall(r"^\s+(?:-\w, )?--([a-z0-9-]+)", out.decode(), re.M)
            self.assertGreater(len(opts), 15, out)
            self.assertIn(cmd, sections, f"docs/cli.md has no section for {cmd}")
            m = re.search(r"^## Options of every subcommand\n(.*?)(?=^## |\Z)", doc, re.S | re.M)
            common_doc = m.group(1) if m else ""
            for o in opts:
                self.assertTrue(f"`--{o}" in sections[cmd] or f"`--{o}" in common_doc,
                                f"--{o} of {cmd} is not in docs/cli.md")
            self.assertIn("--config", out.decode())


if __name__ == "__main__":
    harness.main()
