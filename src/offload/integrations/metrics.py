"""Prometheus metrics of the event-loop watchdog; prometheus-client is optional.

- ``offload_event_loop_blocks_total``: times the loop did not answer for longer than the
  threshold
- ``offload_event_loop_block_seconds``: how long each of those lasted, histogram
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from offload.errors import ConfigurationError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


class BlockMetrics:
    """The two Prometheus metrics of one watchdog, registered until it is uninstalled."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Histogram

        self.registry = registry
        self.blocks = Counter(
            "offload_event_loop_blocks_total",
            "Times the event loop did not answer for longer than the watchdog's threshold.",
            registry=None,
        )
        self.seconds = Histogram(
            "offload_event_loop_block_seconds",
            "How long the event loop did not answer, per block.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=None,
        )
        try:
            registry.register(self.blocks)
        except ValueError:
            raise ConfigurationError(
                "offload_event_loop_blocks_total is already registered: one watchdog per "
                "registry (pass registry= or metrics=False)"
            ) from None
        try:
            registry.register(self.seconds)
        except ValueError:
            registry.unregister(self.blocks)
            raise ConfigurationError(
                "offload_event_loop_block_seconds is already registered in that registry"
            ) from None

    @classmethod
    def create(cls, registry: CollectorRegistry | None) -> BlockMetrics | None:
        """The metrics in ``registry`` (default: the global one); None without prometheus."""
        try:
            import prometheus_client
        except ImportError:
            return None
        return cls(registry if registry is not None else prometheus_client.REGISTRY)

    def observe(self, seconds: float) -> None:
        self.blocks.inc()
        self.seconds.observe(seconds)

    def unregister(self) -> None:
        self.registry.unregister(self.blocks)
        self.registry.unregister(self.seconds)
