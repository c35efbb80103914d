# Running it for real (issue 6): queue groups, NATS clusters and failover,
# graceful stop, metrics, the NATS service API.
natshttp_e2e(cluster_queue_group test_cluster_queue_group.py TIMEOUT 240)
natshttp_e2e(cluster_failover test_cluster_failover.py TIMEOUT 240)
natshttp_e2e(cluster_drain test_cluster_drain.py TIMEOUT 300)
natshttp_e2e(cluster_metrics test_cluster_metrics.py TIMEOUT 120)
natshttp_e2e(cluster_service test_cluster_service.py TIMEOUT 120)
