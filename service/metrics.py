"""Prometheus metrics (the process-wide registry, as Prometheus clients expect)."""

from __future__ import annotations

from prometheus_client import Counter

WEBHOOKS = Counter(
    "meltano_forge_webhooks_total", "Webhook deliveries received", ["forge", "result"]
)
DELIVERIES = Counter(
    "meltano_forge_redeploy_attempts_total", "Redeploy delivery attempts", ["result"]
)
ARCHIVES = Counter("meltano_forge_archive_requests_total", "Archive requests served", ["cache"])
