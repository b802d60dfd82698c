"""The value sets every chart test renders, and the objects each one expects to exist outside
the chart (existingSecret, existingClaim)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.charts.monitoring import ALL_ON

ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Case:
    values: dict[str, Any]
    # Secrets/claims the user provides (the chart only references them).
    external: dict[str, set[str]] = field(default_factory=dict)


EXTERNAL_URLS = {
    "postgresql": {"enabled": False},
    "externalDatabase": {"url": "postgresql+psycopg2://imgproc:s3cret@db.example.com:5432/imgproc"},
    "redis": {"enabled": False},
    "externalRedis": {"url": "redis://:br0ker@redis.example.com:6380/2"},
}

EXTERNAL_HOSTS_WITH_SECRETS = {
    "postgresql": {"enabled": False},
    "externalDatabase": {
        "host": "db.example.com",
        "user": "app",
        "database": "images",
        "existingSecret": "db-credentials",
        "existingSecretPasswordKey": "pg-password",
    },
    "redis": {"enabled": False},
    "externalRedis": {
        "host": "redis.example.com",
        "port": 6379,
        "db": 1,
        "existingSecret": "redis-credentials",
        "existingSecretPasswordKey": "redis-password",
    },
}

CASES: dict[str, Case] = {
    "defaults": Case({}),
    "external-urls": Case(EXTERNAL_URLS),
    "external-hosts-existing-secrets": Case(
        EXTERNAL_HOSTS_WITH_SECRETS, {"Secret": {"db-credentials", "redis-credentials"}}
    ),
    "ingress": Case(
        {
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "host": "imgproc.example.com",
                "tls": [{"secretName": "imgproc-tls", "hosts": ["imgproc.example.com"]}],
            }
        }
    ),
    "ingress-flower-off": Case({"ingress": {"enabled": True}, "flower": {"enabled": False}}),
    "autoscaler-off": Case({"autoscaler": {"enabled": False}, "worker": {"replicaCount": 3}}),
    "keda": Case({"keda": {"enabled": True}}),
    "keda-external-urls": Case({**EXTERNAL_URLS, "keda": {"enabled": True}}),
    "app-existing-secret": Case({"secrets": {"existingSecret": "imgproc-app"}}, {"Secret": {"imgproc-app"}}),
    "redis-replicas": Case({"redis": {"replica": {"replicaCount": 2}}}),
    "redis-sentinel": Case({"redis": {"replica": {"replicaCount": 2}, "sentinel": {"enabled": True}}}),
    "redis-sentinel-keda": Case(
        {"redis": {"replica": {"replicaCount": 1}, "sentinel": {"enabled": True}}, "keda": {"enabled": True}}
    ),
    "postgresql-replicas": Case({"postgresql": {"readReplicas": {"replicaCount": 2}}}),
    "external-replica-url": Case(
        {
            **EXTERNAL_URLS,
            "externalDatabase": {
                **EXTERNAL_URLS["externalDatabase"],
                "replicaUrl": "postgresql+psycopg2://imgproc:s3cret@db-ro.example.com:6432/imgproc",
            },
        }
    ),
    "bare": Case(
        {
            "networkPolicy": {"enabled": False},
            "api": {"pdb": {"enabled": False}},
            "worker": {"pdb": {"enabled": False}},
            "persistence": {"existingClaim": "shared-data"},
            "serviceAccount": {"create": False},
            "postgresql": {"primary": {"persistence": {"enabled": False}}},
            "redis": {"master": {"persistence": {"enabled": False}}},
        },
        {"PersistentVolumeClaim": {"shared-data"}},
    ),
    "s3-external": Case(
        {
            "storage": {
                "backend": "s3",
                "s3": {
                    "endpoint": "https://s3.example.com:9443",
                    "publicEndpoint": "https://files.example.com",
                    "bucket": "imgproc-data",
                    "region": "eu-west-1",
                    "prefix": "prod",
                    "forcePathStyle": True,
                    "existingSecret": "s3-credentials",
                    "accessKeyIdKey": "access-key",
                    "secretAccessKeyKey": "secret-key",
                    "caBundle": {"secretName": "s3-ca", "key": "ca.pem"},
                    "signedUrls": {"expiresSeconds": 120},
                },
            }
        },
        {"Secret": {"s3-credentials", "s3-ca"}},
    ),
    "s3-aws-workload-identity": Case(
        {
            "storage": {"backend": "s3", "s3": {"bucket": "imgproc-data", "region": "eu-central-1"}},
            "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/imgproc"}},
            "api": {
                "topologySpreadConstraints": [
                    {
                        "maxSkew": 1,
                        "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {
                            "matchLabels": {"app.kubernetes.io/name": "imgproc", "app.kubernetes.io/component": "api"}
                        },
                    }
                ]
            },
        }
    ),
    "object-store": Case({"objectStore": {"enabled": True}}),
    "object-store-exposed": Case(
        {
            "objectStore": {"enabled": True, "existingSecret": "store-root"},
            "storage": {"s3": {"publicEndpoint": "https://s3.imgproc.example.com"}},
            "ingress": {"enabled": True},
        },
        {"Secret": {"store-root"}},
    ),
    "kind": Case(yaml.safe_load((ROOT / "k8s" / "values-kind.yaml").read_text())),
    # The API behind a CPU HorizontalPodAutoscaler and a Gateway API HTTPRoute (no Ingress).
    "api-autoscaling": Case(
        {
            "api": {
                "autoscaling": {
                    "enabled": True,
                    "minReplicas": 2,
                    "maxReplicas": 6,
                    "targetCPUUtilizationPercentage": 60,
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": 120,
                            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                        }
                    },
                }
            }
        }
    ),
    "gateway": Case(
        {
            "gateway": {
                "enabled": True,
                "hostnames": ["imgproc.example.com"],
                "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "http"}],
            }
        }
    ),
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# Every monitoring object (metrics.*), every conditional alert and a scraper admitted by the
# NetworkPolicies (tests/support/charts/monitoring.py).
CASES["monitoring"] = Case(ALL_ON)

# Traces to a collector in another namespace, admitted by the NetworkPolicies (test_chart_tracing).
CASES["tracing"] = Case(
    {
        "tracing": {
            "enabled": True,
            "endpoint": "http://otel-collector.observability:4318",
            "sampler": "parentbased_traceidratio",
            "samplerArg": "0.25",
            "resourceAttributes": {"deployment.environment": "test"},
            "disabledInstrumentations": ["sqlalchemy", "redis"],
        },
        "networkPolicy": {
            "tracingCollectors": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}
            ]
        },
    }
)

# The kind values with the S3 overlay (what the cluster runs with storage.backend=s3).
CASES["kind-s3"] = Case(deep_merge(CASES["kind"].values, yaml.safe_load((ROOT / "k8s" / "values-s3.yaml").read_text())))
