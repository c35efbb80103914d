# Request bodies, request/response fidelity and bad input (tests/e2e/peers.py
# starts echo_responder and natsraw for these).
natshttp_e2e(body_upload test_body_upload.py TIMEOUT 180)
natshttp_e2e(body_small_payload test_body_small_payload.py TIMEOUT 120)
natshttp_e2e(body_fidelity test_body_fidelity.py TIMEOUT 60)
natshttp_e2e(body_expect test_body_expect.py TIMEOUT 60)
natshttp_e2e(body_chunked test_body_chunked.py TIMEOUT 120)
natshttp_e2e(body_queue_group test_body_queue_group.py TIMEOUT 300)
natshttp_e2e(bad_framing test_bad_framing.py TIMEOUT 60)
natshttp_e2e(bad_response test_bad_response.py TIMEOUT 60)
natshttp_e2e(bad_headers test_bad_headers.py TIMEOUT 60)
natshttp_e2e(bad_nats_input test_bad_nats_input.py TIMEOUT 90)
natshttp_e2e(bad_clients test_bad_clients.py TIMEOUT 90)
