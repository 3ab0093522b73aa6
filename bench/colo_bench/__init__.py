"""colo.ft's benchmarks on the built-in lab: failover outage, cost of protection, checkpoints, deploy, soak."""
