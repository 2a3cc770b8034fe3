"""The sample apps under fixtures/ are data for offload doctor, never tests to collect."""

collect_ignore = ["fixtures"]
