"""Scrape an agent's Prometheus endpoint over HTTP and read samples with prometheus-client's own parser."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """One scrape of /metrics: the families by name, and sample lookup by name and labels."""

    def __init__(self, text: str):
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def samples(self, name: str, **labels) -> list:
        return [
            s for f in self.families.values() for s in f.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels) -> float:
        """The sum of the matching samples (0 when none match)."""
        return sum(s.value for s in self.samples(name, **labels))


def scrape(address: str, timeout: float = 5.0) -> Scrape:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return Scrape(resp.read().decode())
