"""The worker: claims jobs, runs them in executors, keeps their leases, records outcomes."""
