"""NATS security options of every subcommand against a real nats-server:
mutual TLS with a CA made by the test (openssl), user/password, token, NKey
and credentials-file (operator-mode JWT) authentication, each right and wrong; wrong settings end the process at
once with one clear error line and status 1."""

import time

import harness
import test_ops_common as common

SUBJ = "ops"
FAIL_FAST = 15   # seconds: a failed start must not hang (nats.c's connect timeout is 2 s)


class OpsNatsBase(harness.E2ETestCase):

    def assertFailsClearly(self, args, *want):
        """serve ARGS exits 1 within FAIL_FAST seconds with one error line containing want."""
        t0 = time.monotonic()
        rc, err = common.run_serve(*args, timeout=FAIL_FAST + 10)
        took = time.monotonic() - t0
        self.assertEqual(rc, 1, err)
        self.assertLess(took, FAIL_FAST, err)
        lines = common.error_lines(err)
        self.assertEqual(len(lines), 1, err)
        for w in want:
            self.assertIn(w, lines[0])
        self.assertNotIn("ready", err)

    def assertServes(self, nats, *auth):
        """serve and request both connect with these options; the bytes come back exactly."""
        root = self.tmpdir("root")
        files = common.tree(root)
        srv = harness.serve(nats, SUBJ, root, *auth)
        rc, out, err = harness.nats_http("request", "--server", nats.url, *auth,
                                         f"nats+http://{SUBJ}/dir/data.bin")
        self.assertEqual(rc, 0, err)
        self.assertBytesEqual(out, files["/dir/data.bin"])
        srv.stop(check=True)


class TlsTest(OpsNatsBase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        d = harness.tmpdir("pki")
        cls.pki = common.Pki(d / "good")
        cls.server_pem, cls.server_key = cls.pki.issue("server", "serverAuth")
        cls.client_pem, cls.client_key = cls.pki.issue("client", "clientAuth")
        cls.other = common.Pki(d / "other", "another CA")
        cls.other_pem, cls.other_key = cls.other.issue("client", "clientAuth")
        cls.nats = harness.Nats(
            f'tls {{ cert_file: "{cls.server_pem}", key_file: "{cls.server_key}", '
            f'ca_file: "{cls.pki.ca}", verify: true, timeout: 2 }}')
        cls.tls = ["--tls-ca", cls.pki.ca, "--tls-cert", cls.client_pem,
                   "--tls-key", cls.client_key]

    def test_mutual_tls_gateway_and_serve(self):
        root = self.tmpdir("root")
        files = common.tree(root)
        harness.serve(self.nats, SUBJ, root, *self.tls)
        gw = harness.gateway(self.nats, SUBJ, *self.tls)
        rc, body, err = harness.curl(gw.base + "/hello.txt")
        self.assertEqual(rc, 0, err)
        self.assertBytesEqual(body, files["/hello.txt"])
        # both really are on TLS connections: the server says so per client
        conns = self.nats.monitor("connz", subs=0)["connections"]
        self.assertGreaterEqual(len(conns), 2, conns)
        for c in conns:
            self.assertTrue(c.get("tls_version"), c)

    def test_request_over_tls(self):
        self.assertServes(self.nats, *self.tls)

    def test_wrong_ca_fails_clearly(self):
        root = self.tmpdir("root")
        self.assertFailsClearly(
            common.serve_args(self.nats.url, SUBJ, root) +
            ["--tls-ca", self.other.ca, "--tls-cert", self.client_pem, "--tls-key", self.client_key],
            "cannot connect to NATS", "SSL handshake error")

    def test_client_cert_of_another_ca_is_refused(self):
        root = self.tmpdir("root")
        self.assertFailsClearly(
            common.serve_args(self.nats.url, SUBJ, root) +
            ["--tls-ca", self.pki.ca, "--tls-cert", self.other_pem, "--tls-key", self.other_key],
            "cannot connect to NATS")

    def test_no_client_cert_is_refused(self):
        root = self.tmpdir("root")
        self.assertFailsClearly(common.serve_args(self.nats.url, SUBJ, root) +
                                ["--tls-ca", self.pki.ca],
                                "cannot connect to NATS", "--tls-cert")

    def test_missing_file_names_the_option(self):
        root = self.tmpdir("root")
        missing = self.tmpdir("x") / "nope.pem"
        self.assertFailsClearly(common.serve_args(self.nats.url, SUBJ, root) +
                                ["--tls-ca", missing],
                                f"cannot read --tls-ca {missing}: No such file or directory")

    def test_cert_without_key_is_a_usage_error(self):
        root = self.tmpdir("root")
        rc, err = common.run_serve(*common.serve_args(self.nats.url, SUBJ, root),
                                   "--tls-cert", self.client_pem)
        self.assertEqual(rc, 2, err)
        self.assertIn("--tls-cert and --tls-key go together", err)


class UserPasswordTest(OpsNatsBase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.nats = harness.Nats('authorization { users = [ {user: "alice", password: "s3cret pw"} ] }')

    def test_right_password(self):
        self.assertServes(self.nats, "--user", "alice", "--password", "s3cret pw")

    def test_wrong_password(self):
        root = self.tmpdir("root")
        self.assertFailsClearly(common.serve_args(self.nats.url, SUBJ, root) +
                                ["--user", "alice", "--password", "wrong"],
                                "cannot connect to NATS", "Authorization Violation")

    def test_no_credentials(self):
        root = self.tmpdir("root")
        self.assertFailsClearly(common.serve_args(self.nats.url, SUBJ, root),
                                "cannot connect to NATS", "Authorization Violation")

    def test_password_without_user_is_a_usage_error(self):
        root = self.tmpdir("root")
        rc, err = common.run_serve(*common.serve_args(self.nats.url, SUBJ, root),
                                   "--password", "x")
        self.assertEqual(rc, 2, err)
        self.assertIn("--password needs --user", err)


class TokenTest(OpsNatsBase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.nats = harness.Nats('authorization { token: "tok-123" }')

    def test_right_token(self):
        self.assertServes(self.nats, "--token", "tok-123")

    def test_wrong_token(self):
        root = self.tmpdir("root")
        self.assertFailsClearly(common.serve_args(self.nats.url, SUBJ, root) +
                                ["--token", "tok-124"],
                                "cannot connect to NATS", "Authorization Violation")

    def test_token_and_user_conflict(self):
        root = self.tmpdir("root")
        rc, err = common.run_serve(*common.serve_args(self.nats.url, SUBJ, root),
                                   "--token", "t", "--user", "u")
        self.assertEqual(rc, 2, err)
        self.assertIn("use one of --creds, --nkey, --user and --token", err)


class NkeyTest(OpsNatsBase):
    """The seeds come from openssl's Ed25519 keys; the public key the server
    knows is computed here from openssl's own public key, and the one
    nats-http sends is derived in C from the seed: they must agree."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        d = harness.tmpdir("nkeys")
        cls.seed, cls.pub = common.nkey_user(d, "alice")
        cls.other_seed, _ = common.nkey_user(d, "mallory")
        cls.seed_file = d / "alice.nk"
        cls.seed_file.write_text(cls.seed + "\n")
        cls.other_file = d / "mallory.nk"
        cls.other_file.write_text(cls.other_seed + "\n")
        cls.bad_file = d / "bad.nk"
        # one character changed: the checksum no longer matches
        bad = cls.seed[:10] + ("A" if cls.seed[10] != "A" else "B") + cls.seed[11:]
        cls.bad_file.write_text(bad + "\n")
        cls.nats = harness.Nats(f'authorization {{ users = [ {{nkey: "{cls.pub}"}} ] }}')

    def test_seed_shape(self):
        self.assertEqual(len(self.seed), 58)
        self.assertTrue(self.seed.startswith("SU"), self.seed)
        self.assertEqual(len(self.pub), 56)
        self.assertTrue(self.pub.startswith("U"), self.pub)

    def test_right_seed(self):
        self.assertServes(self.nats, "--nkey", self.seed_file)

    def test_unknown_seed(self):
        root = self.tmpdir("root")
        self.assertFailsClearly(common.serve_args(self.nats.url, SUBJ, root) +
                                ["--nkey", self.other_file],
                                "cannot connect to NATS", "Authorization Violation")

    def test_corrupt_seed(self):
        root = self.tmpdir("root")
        self.assertFailsClearly(common.serve_args(self.nats.url, SUBJ, root) +
                                ["--nkey", self.bad_file],
                                f"--nkey {self.bad_file}: the seed is not a valid user seed")



class CredsTest(OpsNatsBase):
    """Operator mode: an operator, an account and user JWTs made by the test
    (Ed25519 by openssl), the account preloaded in the server's resolver."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        d = harness.tmpdir("jwt")
        conf, account, _ = common.operator_setup(d / "op")
        cls.creds = common.creds_file(d, "alice", account)
        # a user of an account the server does not know
        _, stranger, _ = common.operator_setup(d / "other")
        cls.stranger = common.creds_file(d, "mallory", stranger)
        cls.nats = harness.Nats(conf)

    def test_right_creds(self):
        self.assertServes(self.nats, "--creds", self.creds)

    def test_creds_of_an_unknown_account(self):
        root = self.tmpdir("root")
        self.assertFailsClearly(common.serve_args(self.nats.url, SUBJ, root) +
                                ["--creds", self.stranger],
                                "cannot connect to NATS", "Authorization Violation")

    def test_no_creds(self):
        root = self.tmpdir("root")
        self.assertFailsClearly(common.serve_args(self.nats.url, SUBJ, root),
                                "cannot connect to NATS", "Authorization Violation")

    def test_missing_creds_file(self):
        root = self.tmpdir("root")
        missing = self.tmpdir("c") / "none.creds"
        self.assertFailsClearly(common.serve_args(self.nats.url, SUBJ, root) +
                                ["--creds", missing],
                                f"cannot read --creds {missing}: No such file or directory")


if __name__ == "__main__":
    harness.main()
