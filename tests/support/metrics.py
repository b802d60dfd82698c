"""Reading Prometheus metrics in tests: this process's registry (`value`, `Counts`), or an
exposition scraped from a served port (`scrape`, `Scraped.value`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families


def value(name: str, **labels: str) -> float:
    """A sample of this process's registry (0 when the series does not exist yet)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def series(name: str, labels: dict[str, str]) -> str:
    """``name{a="1",b="2"}``, labels sorted: how Counts names the samples it watches."""
    inner = ",".join(f'{key}="{labels[key]}"' for key in sorted(labels))
    return f"{name}{{{inner}}}" if inner else name


class Counts:
    """Samples before and after an action: ``counts = Counts(("name", {labels}), ...)``, act,
    then ``counts.changes()`` maps each watched sample (``series``) to how much it moved."""

    def __init__(self, *samples: tuple[str, dict[str, str]]) -> None:
        self.samples = samples
        self.before = [value(name, **labels) for name, labels in samples]

    def changes(self) -> dict[str, float]:
        return {
            series(name, labels): value(name, **labels) - before
            for (name, labels), before in zip(self.samples, self.before, strict=True)
        }

    def moved(self) -> dict[str, float]:
        """Only the samples that changed."""
        return {key: delta for key, delta in self.changes().items() if delta}


@dataclass
class Scraped:
    text: str

    def samples(self, name: str) -> Iterable[tuple[dict[str, str], float]]:
        for family in text_string_to_metric_families(self.text):
            for sample in family.samples:
                if sample.name == name:
                    yield sample.labels, sample.value

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named ``name`` whose labels include ``labels`` (0 if none)."""
        return sum(v for found, v in self.samples(name) if labels.items() <= found.items())


def scrape(url: str) -> Scraped:
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return Scraped(response.text)
