"""skaffold's own reading of the local-cluster profile, offline: needs the skaffold binary
(scripts/k8s-tools --cluster), no cluster."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from tests.support.charts.rendering import ROOT


def test_skaffold_renders_the_cluster_profile_offline(k8s_tools_bin, tmp_path):
    """skaffold's own reading of the profile (strict YAML, its templates), no cluster or registry:
    the image by the tag skaffold would push, the namespace, the ingress host and the API
    server's address from the environment."""
    skaffold = k8s_tools_bin / "skaffold"
    if not skaffold.exists():
        reason = "skaffold is missing: run scripts/k8s-tools --cluster"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    env = {
        "PATH": f"{k8s_tools_bin}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "KUBECONFIG": str(tmp_path / "none"),
        "SKAFFOLD_INTERACTIVE": "false",
        "SKAFFOLD_UPDATE_CHECK": "false",
    }
    argv = [str(skaffold), "render", "-p", "cluster", "--offline", "--digest-source=tag"]
    result = subprocess.run(
        argv,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env
        | {"IMGPROC_NODE_IP": "192.0.2.7", "IMGPROC_INGRESS_HOST": "dev.imgproc.test", "IMGPROC_NAMESPACE": "dev-ns"},
    )
    assert result.returncode == 0, result.stderr
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    api = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "imgproc-api")
    binding = next(o for o in objects if o["kind"] == "RoleBinding" and o["metadata"]["name"] == "imgproc-operator")
    assert binding["subjects"][0]["namespace"] == "dev-ns"  # helm template ran with --namespace dev-ns
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("127.0.0.1:5001/imgproc:")
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert api["spec"]["replicas"] == 1
    (ingress,) = [o for o in objects if o["kind"] == "Ingress"]
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == ["dev.imgproc.test"]
    assert "cidr: 192.0.2.7/32" in result.stdout

    # Without `scripts/cluster env`, a clear error instead of a broken NetworkPolicy.
    missing = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert missing.returncode != 0
    assert "IMGPROC_NODE_IP is not set: eval $(scripts/cluster env)" in missing.stdout + missing.stderr
