"""Prometheus metrics, in a registry of their own so several apps can live in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """Every metric the receiver exports, named `receiver_*`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.alerts_received = Counter(
            "receiver_alerts_received_total",
            "Alerts received in webhook payloads.",
            ["status"],
            registry=r,
        )
        self.alerts_admitted = Counter(
            "receiver_alerts_admitted_total",
            "Alerts admitted for remediation, by rule.",
            ["rule"],
            registry=r,
        )
        self.alerts_suppressed = Counter(
            "receiver_alerts_suppressed_total",
            "Alert/rule pairs not remediated, by reason (duplicate, cooldown, no_rule, template_error).",
            ["reason"],
            registry=r,
        )
        self.alerts_rejected = Counter(
            "receiver_alerts_rejected_total",
            "Alerts in a payload that could not be read.",
            registry=r,
        )
        self.executions = Counter(
            "receiver_executions_total",
            "Executions that ended, by playbook and outcome.",
            ["playbook", "outcome"],
            registry=r,
        )
        self.executions_running = Gauge(
            "receiver_executions_running", "Executions running in this process.", registry=r
        )
        self.step_duration = Histogram(
            "receiver_step_duration_seconds",
            "Duration of playbook steps, by action and outcome.",
            ["action", "outcome"],
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
        )
        self.webhook_duration = Histogram(
            "receiver_webhook_duration_seconds",
            "Time to answer a webhook request, by status code.",
            ["code"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.approvals = Counter(
            "receiver_approvals_total",
            "Approval steps requested and decided: requested, approved, rejected, expired.",
            ["event"],
            registry=r,
        )
        self.outcome_deliveries = Counter(
            "receiver_outcome_deliveries_total",
            "Outcome reports (config outcome:) by kind (notify, annotate) and result (sent, failed).",
            ["kind", "result"],
            registry=r,
        )
        self.breaker_opened = Counter(
            "receiver_circuit_breaker_opened_total",
            "Times a rule's circuit breaker opened, by rule and reason (rate, failures).",
            ["rule", "reason"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "receiver_queue_depth",
            "Executions queued or running across every replica (sampled from the store).",
            registry=r,
        )
        self.store_errors = Counter(
            "receiver_store_errors_total",
            "Store calls that failed because the store was unreachable.",
            ["operation"],
            registry=r,
        )
        # As Prometheus and Alertmanager name theirs, so the same alerts work on the receiver.
        self.reload_successful = Gauge(
            "receiver_config_last_reload_successful",
            "Whether the last config reload succeeded (1) or was refused (0).",
            registry=r,
        )
        self.reload_success_time = Gauge(
            "receiver_config_last_reload_success_timestamp_seconds",
            "When the config in use was loaded (start or last successful reload).",
            registry=r,
        )
        self.config_info = Gauge(
            "receiver_config_info",
            "Always 1; the label is the version (digest) of the config in use.",
            ["version"],
            registry=r,
        )
        self.reloads = Counter(
            "receiver_config_reloads_total",
            "Config reloads by result.",
            ["result"],
            registry=r,
        )

    def config_loaded(self, version: str, *, ok: bool, at: float, trigger: str = "startup") -> None:
        """Record a load of the config: at start (trigger "startup") or a reload."""
        self.reload_successful.set(1 if ok else 0)
        if trigger != "startup":
            self.reloads.labels("success" if ok else "failure").inc()
        if ok:
            self.reload_success_time.set(at)
            self.config_info.clear()
            self.config_info.labels(version).set(1)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
