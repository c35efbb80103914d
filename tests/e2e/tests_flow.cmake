# e2e modules for protocol v2: negotiation with v1 peers, flow control,
# integrity, cancellation, and proxy cases BR-19/20/21/22/25.
# test_flow_common.py holds their shared fixtures and no tests.
natshttp_e2e(flow_pairings test_flow_pairings.py TIMEOUT 180)
natshttp_e2e(flow_slow test_flow_slow.py TIMEOUT 300)
natshttp_e2e(flow_integrity test_flow_integrity.py TIMEOUT 120)
natshttp_e2e(flow_cancel test_flow_cancel.py TIMEOUT 120)
natshttp_e2e(flow_cases test_flow_cases.py TIMEOUT 120)
