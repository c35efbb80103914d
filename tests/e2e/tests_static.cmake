# e2e modules for `nats-http serve --dir` behind the gateway (static files).
# test_static_common.py holds their shared fixtures and no tests.
natshttp_e2e(static_get test_static_get.py TIMEOUT 120)
natshttp_e2e(static_paths test_static_paths.py TIMEOUT 120)
natshttp_e2e(static_request test_static_request.py TIMEOUT 120)
natshttp_e2e(static_failures test_static_failures.py TIMEOUT 120)
natshttp_e2e(static_load test_static_load.py TIMEOUT 180)
