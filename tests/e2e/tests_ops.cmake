# e2e modules for running nats-http as a daemon: NATS security options, the
# HTTPS gateway, log files and the access log, the --config file.
# test_ops_common.py holds their shared helpers and no tests.
natshttp_e2e(ops_nats test_ops_nats.py TIMEOUT 180)
natshttp_e2e(ops_daemon test_ops_daemon.py TIMEOUT 180)
