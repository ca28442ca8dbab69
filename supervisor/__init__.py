"""ibfleet's control plane: settings, lifecycle, reconcile, alerts, metrics, HTTP API and CLI."""
