"""Offline validation of the local-cluster files: skaffold.yaml against skaffold's published
JSON schema (every profile applied), k8s/kind.yaml with kind's own strict decoding and rules
(kind-config-check), the namespace manifest and the kind values."""

from __future__ import annotations

import copy
import json
import subprocess
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.support.charts.rendering import CHART, KUBE_VERSION, ROOT, run_helm

SKAFFOLD = ROOT / "skaffold.yaml"


@pytest.fixture(scope="module")
def skaffold_schema(k8s_tools_bin) -> tuple[str, jsonschema.Draft7Validator]:
    """(config apiVersion, validator) from the schema scripts/k8s-tools copied out of the skaffold
    module. Validating against SkaffoldConfig directly (not the top-level anyOf) gives precise
    errors such as "Additional properties are not allowed ('releses' was unexpected)"."""
    schemas = sorted(k8s_tools_bin.glob("skaffold-schema-*.json"))
    if not schemas:
        pytest.fail("no skaffold schema in the tools directory: run scripts/k8s-tools", pytrace=False)
    schema = json.loads(schemas[-1].read_text())
    version = schemas[-1].name.removeprefix("skaffold-schema-").removesuffix(".json")
    root = {"$ref": "#/definitions/SkaffoldConfig", "definitions": schema["definitions"]}
    return f"skaffold/{version}", jsonschema.Draft7Validator(root)


def apply_json_patch(document: dict[str, Any], patches: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 add/remove/replace, as skaffold applies profile patches."""
    result = copy.deepcopy(document)
    for patch in patches:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in patch["path"].lstrip("/").split("/")]
        target = result
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        key: Any = int(last) if isinstance(target, list) and last != "-" else last
        if patch["op"] == "remove":
            del target[key]
        elif patch["op"] in ("add", "replace"):
            if isinstance(target, list):
                target.insert(len(target) if key == "-" else key, patch["value"])
            else:
                if patch["op"] == "replace":
                    assert key in target, patch
                target[key] = patch["value"]
        else:
            raise AssertionError(f"unsupported patch op {patch['op']}")
    return result


def schema_errors(validator: jsonschema.Draft7Validator, config: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(config)]


def test_skaffold_config_uses_the_newest_schema_and_validates(skaffold_schema):
    api_version, validator = skaffold_schema
    config = yaml.safe_load(SKAFFOLD.read_text())
    assert config["apiVersion"] == api_version  # the schema does not pin apiVersion itself
    assert config["kind"] == "Config"
    assert schema_errors(validator, config) == []


@pytest.mark.parametrize("profile", ["dev", "ci", "cluster"])
def test_every_skaffold_profile_validates_after_its_patches(skaffold_schema, profile):
    _, validator = skaffold_schema
    config = yaml.safe_load(SKAFFOLD.read_text())
    (selected,) = [p for p in config["profiles"] if p["name"] == profile]
    effective = apply_json_patch({k: v for k, v in config.items() if k != "profiles"}, selected.get("patches", []))
    assert schema_errors(validator, effective) == []


@pytest.mark.parametrize("order", [["dev", "cluster"], ["cluster", "dev"], ["ci", "cluster"], ["cluster", "ci"]])
def test_the_cluster_profile_composes_with_the_auto_activated_ones(skaffold_schema, order):
    """`skaffold dev -p cluster` also activates dev, and CI=true activates ci: whatever the order,
    the patches apply, the image is pulled from the registry and nothing is port-forwarded."""
    _, validator = skaffold_schema
    config = yaml.safe_load(SKAFFOLD.read_text())
    profiles = {p["name"]: p for p in config["profiles"]}
    effective = {k: v for k, v in config.items() if k != "profiles"}
    for name in order:
        effective = apply_json_patch(effective, profiles[name]["patches"])
    assert schema_errors(validator, effective) == []
    (release,) = effective["deploy"]["helm"]["releases"]
    assert release["valuesFiles"] == ["k8s/values-local.yaml"]
    assert release["setValueTemplates"]["image.pullPolicy"] == "IfNotPresent"
    assert release["setValueTemplates"]["image.digest"] == "{{.IMAGE_DIGEST_127_0_0_1_5001_imgproc}}"
    assert effective["build"]["artifacts"][0]["custom"]["buildCommand"] == "scripts/images skaffold"
    assert effective["build"]["local"]["push"] is True
    assert not effective.get("portForward")


def test_schema_validation_catches_a_typo(skaffold_schema):
    _, validator = skaffold_schema
    config = yaml.safe_load(SKAFFOLD.read_text())
    config["deploy"]["helm"]["releses"] = config["deploy"]["helm"].pop("releases")
    assert any("'releses' was unexpected" in error for error in schema_errors(validator, config))


def test_skaffold_builds_the_image_and_deploys_the_chart_with_the_kind_values(k8s_tools_bin, tmp_path):
    config = yaml.safe_load(SKAFFOLD.read_text())
    (artifact,) = config["build"]["artifacts"]
    assert artifact["image"] == "imgproc"
    assert (ROOT / artifact.get("context", ".") / artifact["docker"]["dockerfile"]).is_file()
    assert config["build"]["local"]["push"] is False
    (release,) = config["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"]) == CHART
    assert [ROOT / f for f in release["valuesFiles"]] == [ROOT / "k8s" / "values-kind.yaml"]
    assert release["setValueTemplates"] == {
        "image.repository": "{{.IMAGE_REPO_imgproc}}",
        "image.tag": "{{.IMAGE_TAG_imgproc}}",
    }
    assert release["skipBuildDependencies"] is True
    namespace = yaml.safe_load((ROOT / "k8s" / "namespace.yaml").read_text())["metadata"]["name"]
    assert release["namespace"] == namespace
    assert {p["name"] for p in config["profiles"]} == {"dev", "ci", "cluster"}

    # The port-forward names a Service the release really creates.
    (forward,) = config["portForward"]
    result = run_helm(
        k8s_tools_bin,
        tmp_path,
        "template",
        release["name"],
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
        "--values",
        str(ROOT / "k8s" / "values-kind.yaml"),
        "--set",
        "image.repository=registry.local/imgproc",
        "--set",
        "image.tag=abc123",
    )
    assert result.returncode == 0, result.stderr
    services = {o["metadata"]["name"]: o for o in yaml.safe_load_all(result.stdout) if o and o["kind"] == "Service"}
    assert forward["resourceType"] == "service" and forward["namespace"] == namespace
    assert forward["port"] in [p["port"] for p in services[forward["resourceName"]]["spec"]["ports"]]
    assert "registry.local/imgproc:abc123" in result.stdout


def test_kind_cluster_config_passes_kinds_own_checks(k8s_tools_bin):
    check = k8s_tools_bin / "kind-config-check"
    if not check.exists():
        pytest.fail("kind-config-check is missing: run scripts/k8s-tools", pytrace=False)
    result = subprocess.run([str(check), str(ROOT / "k8s" / "kind.yaml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((ROOT / "k8s" / "kind.yaml").read_text())
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    (node,) = config["nodes"]
    assert node["role"] == "control-plane" and node["labels"] == {"ingress-ready": "true"}
    assert {(m["containerPort"], m["hostPort"]) for m in node["extraPortMappings"]} == {(80, 80), (443, 443)}


def test_kind_config_check_rejects_unknown_fields(k8s_tools_bin, tmp_path):
    bad = tmp_path / "kind.yaml"
    bad.write_text((ROOT / "k8s" / "kind.yaml").read_text().replace("extraPortMappings", "extraPortMapping"))
    result = subprocess.run([str(k8s_tools_bin / "kind-config-check"), str(bad)], capture_output=True, text=True)
    assert result.returncode == 1 and "field extraPortMapping not found" in result.stderr


def test_namespace_enforces_the_restricted_pod_security_standard():
    namespace = yaml.safe_load((ROOT / "k8s" / "namespace.yaml").read_text())
    kubernetes_validate.validate(namespace, KUBE_VERSION.rsplit(".", 1)[0], strict=True)
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_kind_values_suit_a_local_plain_http_cluster():
    values = yaml.safe_load((ROOT / "k8s" / "values-kind.yaml").read_text())
    assert values["image"]["pullPolicy"] in ("Never", "IfNotPresent")
    assert values["ingress"] == {"enabled": True, "className": "nginx", "host": "localhost"}
    assert values["config"]["cookieSecure"] is False
    assert values["persistence"]["accessModes"] == ["ReadWriteOnce"]
