"""tracing.*: the standard OTEL_* variables in the ConfigMap of API and workers, only when switched
on, refused without an endpoint, and the collector reachable through the NetworkPolicies from API
and worker pods only. (The case "tracing" of tests/support/charts/matrix.py also runs through
every generic check of test_chart_render; the spans themselves: tests/*/core/test_tracing.py.)"""

from __future__ import annotations

import json

import pytest

from app.core.config import TRACING_INSTRUMENTATIONS, Settings
from tests.support.charts.manifests import Endpoint, by_kind, named, traffic_allowed
from tests.support.charts.matrix import CASES, deep_merge
from tests.support.charts.release import FULLNAME, release_pods
from tests.support.charts.rendering import CHART

ON = CASES["tracing"].values
COLLECTOR = Endpoint.pod("otel-collector", {"app": "otel-collector"}, "observability")
ELSEWHERE = Endpoint.pod("otel-collector", {"app": "otel-collector"}, "elsewhere")


def config_data(objects) -> dict[str, str]:
    return named(objects, "ConfigMap", FULLNAME)["data"]


def test_off_by_default_no_otel_variable_and_no_way_out(render):
    objects = render({})
    assert not [name for name in config_data(objects) if name.startswith("OTEL_")]
    pods = release_pods(objects)
    for name in ("api", "worker"):
        assert not traffic_allowed(by_kind(objects, "NetworkPolicy"), pods[name], COLLECTOR, 4318), name


def test_on_the_configmap_carries_the_standard_variables_the_app_reads(render, monkeypatch):
    data = config_data(render(ON))
    assert {name: value for name, value in data.items() if name.startswith("OTEL_")} == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4318",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "sqlalchemy,redis",
    }
    for name, value in data.items():  # what a pod gets through envFrom
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.tracing_exporter == "otlp"
    assert settings.tracing_instrumentations == ("fastapi", "celery", "httpx", "botocore")


def test_only_api_and_workers_reach_the_collector_and_only_there(render):
    objects = render(ON)
    policies, pods = by_kind(objects, "NetworkPolicy"), release_pods(objects)
    for name in ("api", "worker"):
        assert traffic_allowed(policies, pods[name], COLLECTOR, 4318), name
        assert not traffic_allowed(policies, pods[name], COLLECTOR, 4317), name  # the endpoint's port only
        assert not traffic_allowed(policies, pods[name], ELSEWHERE, 4318), name
    for name in ("flower", "operator"):
        assert not traffic_allowed(policies, pods[name], COLLECTOR, 4318), name
    # No collector peers given: the endpoint's port anywhere (a collector outside the cluster).
    anywhere = render(deep_merge(ON, {"networkPolicy": {"tracingCollectors": []}}))
    outside = Endpoint("collector", {}, "", {}, ip="203.0.113.7")
    for name in ("api", "worker"):
        assert traffic_allowed(by_kind(anywhere, "NetworkPolicy"), release_pods(anywhere)[name], outside, 4318), name


@pytest.mark.parametrize(
    ("endpoint", "port"), [("https://otel.example.com", 443), ("http://otel.example.com", 80), ("http://c:4318", 4318)]
)
def test_the_opened_port_is_the_endpoints(render, endpoint, port):
    objects = render(deep_merge(ON, {"tracing": {"endpoint": endpoint}, "networkPolicy": {"tracingCollectors": []}}))
    outside = Endpoint("collector", {}, "", {}, ip="203.0.113.7")
    api = release_pods(objects)["api"]
    assert traffic_allowed(by_kind(objects, "NetworkPolicy"), api, outside, port)
    assert not traffic_allowed(by_kind(objects, "NetworkPolicy"), api, outside, port + 1)


def test_switched_on_without_an_endpoint_is_refused(helm_fails):
    assert "tracing.enabled needs tracing.endpoint" in helm_fails({"tracing": {"enabled": True}})


@pytest.mark.parametrize(
    "tracing",
    [
        {"sampler": "sometimes"},
        {"samplerArg": "2"},
        {"endpoint": "otel:4318"},
        {"resourceAttributes": {"a": 1}},
        {"disabledInstrumentations": ["psycopg"]},  # not one of the image's
        {"disabledInstrumentations": "sqlalchemy,redis"},
    ],
)
def test_the_schema_refuses_wrong_values(helm_fails, tracing):
    assert "values don't meet the specifications of the schema" in helm_fails({"tracing": tracing})


def test_the_schema_names_the_instrumentations_the_app_has():
    schema = json.loads((CHART / "values.schema.json").read_text())
    items = schema["properties"]["tracing"]["properties"]["disabledInstrumentations"]["items"]
    assert items["enum"] == list(TRACING_INSTRUMENTATIONS)


def test_notes_say_where_traces_go_only_when_on(notes):
    assert "Traces (tracing.enabled) go to http://otel-collector.observability:4318" in notes(ON)
    assert "Traces" not in notes({})
