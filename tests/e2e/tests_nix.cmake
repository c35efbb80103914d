# The real nix client (Debian nix-bin) against serve --dir behind the gateway:
# a Nix binary cache over NATS (docs/nix-binary-cache.md). nixenv.py holds the
# shared fixtures (private nix state, the offline test closure) and no tests.
# nix is slow (xz of a 30 MiB NAR alone takes ~20 s): generous timeouts.
natshttp_e2e(nix_fetch test_nix_fetch.py TIMEOUT 600)
natshttp_e2e(nix_upload test_nix_upload.py TIMEOUT 600)
natshttp_e2e(nix_readonly test_nix_readonly.py TIMEOUT 300)
