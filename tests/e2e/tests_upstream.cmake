# e2e modules for `nats-http serve --upstream` (a real upstream: upstream_server.py)
# behind the gateway. test_upstream_common.py holds their shared fixtures and no tests.
natshttp_e2e(upstream_basic test_upstream_basic.py TIMEOUT 180)
natshttp_e2e(upstream_failures test_upstream_failures.py TIMEOUT 240)
natshttp_e2e(upstream_stream test_upstream_stream.py TIMEOUT 180)
natshttp_e2e(upstream_big test_upstream_big.py TIMEOUT 600)
natshttp_e2e(upstream_pressure test_upstream_pressure.py TIMEOUT 240)
