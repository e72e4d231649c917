"""Reading the service's Prometheus text (GET /metrics) in tests."""

from __future__ import annotations


def metric(text: str, name: str, **labels: str) -> float:
    """The value of the sample `name{labels}` in a /metrics answer; 0 when it is absent (a
    counter not yet incremented is not shown)."""
    wanted = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0
