# NATS permissions (docs/examples/permissions.conf), limits and hostile URLs.
natshttp_e2e(perm_nats test_perm_nats.py TIMEOUT 180)
natshttp_e2e(bad_limits test_bad_limits.py TIMEOUT 120)
