"""Deployment files, checked offline: Kubernetes manifests against the API schemas
(kubernetes-validate), the compose file against the Compose Specification (check-jsonschema's
bundled copy), the Dockerfile with hadolint; and that they agree with the server they deploy."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.api.conftest import Server

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
COMPOSE = REPO / "deploy" / "docker-compose.yml"
K8S_VERSION = "1.31.0"


def tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    assert Path(found).exists(), f"{name} is a test dependency (pyproject.toml [test])"
    return found


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def manifests() -> list[Path]:
    """Every Kubernetes object shipped (kustomize files and Helm values are not objects; the
    scale-out Deployment patch is partial by design)."""
    skip = {"kustomization.yaml", "milvus-values.yaml", "deployment-patch.yaml"}
    return sorted(p for p in K8S.rglob("*.yaml") if p.name not in skip)


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_kubernetes_manifests_validate_strictly_against_the_api_schemas(tmp_path: Path) -> None:
    checked = run(tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, *map(str, manifests()))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("passed") == len(manifests())
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert all((K8S / name).is_file() for name in listed)
    # the validator rejects what the API server would: a misspelt field fails
    broken = tmp_path / "deployment.yaml"
    broken.write_text((K8S / "deployment.yaml").read_text().replace("livenessProbe:", "livenesProbe:"))
    assert run(tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, str(broken)).returncode != 0


def test_compose_file_validates_against_the_compose_specification(tmp_path: Path) -> None:
    validate = (tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec")
    checked = run(*validate, str(COMPOSE), str(COMPOSE.parent / "docker-compose.milvus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_periods:"))
    assert run(*validate, str(broken)).returncode != 0
    # every file the compose file mounts from the repository exists (certs and secrets are made
    # by the operator, as its header says)
    compose = yaml.safe_load(COMPOSE.read_text())
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")) and not re.search(r"certs|secrets", source):
                assert (COMPOSE.parent / source).exists(), source


def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    config = str(REPO / ".hadolint.yaml")
    checked = run(tool("hadolint"), "--config", config, str(REPO / "Dockerfile"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get update && apt-get install -y curl\nRUN cd /tmp\n")
    assert run(tool("hadolint"), "--config", config, str(bad)).returncode != 0
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^USER 10001$", text, re.M) and "HEALTHCHECK" in text  # non-root, probed


def test_shutdown_and_probe_settings_agree_with_the_server() -> None:
    """Kubernetes kills a pod terminationGracePeriodSeconds after it starts stopping: preStop
    plus the server's own grace period must fit inside it, or streams lose their last finals."""
    deployment = next(d for d in documents(K8S / "deployment.yaml") if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    config = documents(K8S / "configmap.yaml")[0]["data"]
    grace = float(config["VOXINDEX_SHUTDOWN_GRACE_S"])
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + grace + 5
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    compose = yaml.safe_load(COMPOSE.read_text())["services"]["voxindex"]
    compose_grace = float(compose["environment"]["VOXINDEX_SHUTDOWN_GRACE_S"])
    assert float(compose["stop_grace_period"].rstrip("s")) > compose_grace
    hpa = documents(K8S / "hpa.yaml")[0]
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "voxindex_active_streams"


def exported_families(url: str) -> set[str]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return queried_series(
        " ".join(line.split()[2] for line in text.splitlines() if line.startswith("# TYPE "))
    )


def queried_series(text: str) -> set[str]:
    names = set(re.findall(r"\b((?:voxindex|process)_[a-z_]+)", text))
    return {re.sub(r"_(bucket|sum|count|total)$", "", n) for n in names}


def test_dashboard_and_alerts_query_series_the_server_exports(server: Server) -> None:
    dashboard = json.loads((REPO / "deploy" / "grafana" / "dashboards" / "voxindex.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 16
    alerts = (REPO / "deploy" / "prometheus" / "alerts.yml").read_text()
    wanted = queried_series("\n".join(exprs)) | queried_series(alerts)
    exported = exported_families(server.url) | {"voxindex_gpu_memory_bytes"}  # that one: CUDA only
    assert wanted <= exported, f"queried but never exported: {sorted(wanted - exported)}"
    datasource = yaml.safe_load(
        (REPO / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]["uid"]
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {datasource}


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_the_probed_endpoints_exist(server: Server, path: str) -> None:
    assert httpx.get(f"{server.url}{path}", timeout=10).status_code == 200
