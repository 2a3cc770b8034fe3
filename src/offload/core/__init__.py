"""The pure model of offload: states, jobs, tasks, retries, codec and clock. No I/O."""
