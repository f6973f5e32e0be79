"""receiver: turns Alertmanager alerts into recorded, deduplicated remediations."""

__version__ = "0.1.0"
