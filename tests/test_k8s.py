"""deploy/k8s/: the manifests validate against Kubernetes' schemas (bundled with
kubernetes-validate, no cluster or network), and their settings start a real server."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from cli import app
from dummy_vllm.commands.sessions import sessions_app

from .conftest import REPO, LiveServer
from .recording.test_transfer import write

K8S = REPO / "deploy" / "k8s"
MANIFESTS = sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")
# The oldest release kubernetes-validate still bundles, and the newest.
VERSIONS = ("1.25.0", kubernetes_validate.latest_version())


def documents() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text())}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_manifest_validates(path: Path, version: str) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, version, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [path.name for path in MANIFESTS]


def test_a_broken_manifest_is_caught() -> None:
    deployment = documents()["Deployment"]
    deployment["spec"]["replicas"] = "3"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


def test_deployment_wiring() -> None:
    docs = documents()
    deployment, service = docs["Deployment"], docs["Service"]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert deployment["spec"]["replicas"] > 1
    assert container["envFrom"] == [
        {"configMapRef": {"name": docs["ConfigMap"]["metadata"]["name"]}}
    ]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["resources"]["requests"]
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    (mount,) = container["volumeMounts"]
    assert mount["readOnly"] is True
    (volume,) = pod["spec"]["volumes"]
    assert volume["persistentVolumeClaim"]["readOnly"] is True
    assert service["spec"]["selector"] == pod["metadata"]["labels"]
    assert docs["ConfigMap"]["data"]["DUMMY_VLLM_REPLAY_FILE"].startswith(mount["mountPath"])


def test_configmap_names_only_real_serve_variables() -> None:
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    known = {param.envvar for param in serve.params if param.envvar}
    text = (K8S / "configmap.yaml").read_text()
    # The commented alternative counts too.
    named = set(re.findall(r"(DUMMY_VLLM_[A-Z_]+):", text))
    assert len(named) > 5
    assert named <= known, named - known


def test_the_configmap_starts_a_replay_server(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    db = tmp_path / "src.db"
    write(db)
    mount = documents()["Deployment"]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][
        0
    ]["mountPath"]
    env = {
        key: value.replace(mount, str(tmp_path))
        for key, value in documents()["ConfigMap"]["data"].items()
        if key not in {"DUMMY_VLLM_HOST", "DUMMY_VLLM_PORT"}
    }
    exported = env["DUMMY_VLLM_REPLAY_FILE"]
    result = CliRunner().invoke(sessions_app, ["export", "s", "-o", exported, "--db", str(db)])
    assert result.exit_code == 0, result.output

    server = start_server(env=env)

    assert httpx.get(f"{server.url}/health").status_code == 200
    # The file's recorded model and vLLM version, as for a database session.
    models = httpx.get(f"{server.url}/v1/models").json()
    assert [model["id"] for model in models["data"]] == ["m1"]
    assert httpx.get(f"{server.url}/version").json() == {"version": "0.33.1"}
