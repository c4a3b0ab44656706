"""docker-compose.yml, the Dockerfile, nginx's config and deploy/ are checked offline: each
against its schema, and all of them against the code (its commands, settings, endpoints)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from compose_spec import PyCompose

from shared.settings import Settings
from tests.topology import nginx_binary, nginx_config

REPO = Path(__file__).resolve().parents[1]
K8S_VERSION = "1.33"
SETTINGS = {f"TOKENRELAY_{name.upper()}" for name in Settings.model_fields}
UPSTREAM_ENV = {"OPENAI_API_KEY", "OPENAI_BASE_URL"}
CLI_COMMANDS = {"gateway", "worker", "mock-model", "dev", "run", "admin"}


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl (with its built-in kustomize) renders deploy/k8s"
    done = subprocess.run(
        [kubectl, "kustomize", str(REPO / "deploy/k8s" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def check_cli(argv: list[str]) -> None:
    """``argv`` (after the ``tokenrelay`` entry point) is a command the CLI accepts."""
    assert argv[0] in CLI_COMMANDS, argv
    run_cli = "import sys; from tokenrelay.cli import main; main(sys.argv[1:])"
    done = subprocess.run(
        [sys.executable, "-c", run_cli, *argv, "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    for option in (a for a in argv if a.startswith("--")):
        assert option in done.stdout, f"tokenrelay {argv[0]} has no {option}"


# --- Kubernetes --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example() -> list[dict[str, Any]]:
    return render("overlays/example")


def test_the_example_overlay_renders_every_part(example: list[dict[str, Any]]) -> None:
    kinds = sorted(f"{doc['kind']}/{doc['metadata']['name']}" for doc in example)
    assert kinds == [
        "ConfigMap/tokenrelay-config",
        "Deployment/tokenrelay-gateway",
        "Deployment/tokenrelay-worker",
        "HorizontalPodAutoscaler/tokenrelay-gateway",
        "Namespace/tokenrelay",
        "PodDisruptionBudget/tokenrelay-gateway",
        "Secret/tokenrelay-gateway",
        "Secret/tokenrelay-upstream",
        "Service/redis",
        "Service/tokenrelay-gateway",
        "StatefulSet/redis",
    ]
    assert {doc["metadata"].get("namespace") for doc in example if doc["kind"] != "Namespace"} == {
        "tokenrelay"
    }


@pytest.mark.parametrize("overlay", ["base", "overlays/example"])
def test_every_manifest_passes_the_kubernetes_schema(overlay: str) -> None:
    docs = render(overlay)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_a_broken_manifest_fails_the_schema_check(example: list[dict[str, Any]]) -> None:
    broken = by_kind(example, "Deployment")["tokenrelay-gateway"]
    broken = {**broken, "spec": {**broken["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_deployments_run_real_commands_with_real_settings(example: list[dict[str, Any]]) -> None:
    config = by_kind(example, "ConfigMap")["tokenrelay-config"]["data"]
    secrets = {name: doc["stringData"] for name, doc in by_kind(example, "Secret").items()}
    assert set(config) <= SETTINGS
    assert set(secrets["tokenrelay-gateway"]) <= SETTINGS
    assert set(secrets["tokenrelay-upstream"]) == {"OPENAI_API_KEY"}
    for name, deployment in by_kind(example, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == "registry.example.com/tokenrelay:0.1.0"
        check_cli(container["args"])
        refs = [next(iter(ref.values()))["name"] for ref in container["envFrom"]]
        assert set(refs) <= {"tokenrelay-config", *secrets}, refs
        env = {e["name"] for e in container.get("env", [])}
        assert env <= SETTINGS
        # the upstream key reaches the workers only (SPEC: secrets stay home)
        assert ("tokenrelay-upstream" in refs) == (name == "tokenrelay-worker")
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_gateway_probes_service_and_graceful_termination(example: list[dict[str, Any]]) -> None:
    gateway = by_kind(example, "Deployment")["tokenrelay-gateway"]
    pod = gateway["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    config = by_kind(example, "ConfigMap")["tokenrelay-config"]["data"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + int(
        config["TOKENRELAY_SHUTDOWN_GRACE_S"]
    )
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    service = by_kind(example, "Service")["tokenrelay-gateway"]
    assert service["spec"]["selector"].items() <= labels.items()
    pdb = by_kind(example, "PodDisruptionBudget")["tokenrelay-gateway"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = by_kind(example, "HorizontalPodAutoscaler")["tokenrelay-gateway"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "tokenrelay-gateway"
    assert hpa["spec"]["minReplicas"] >= 2 and pdb["spec"]["minAvailable"] < 2

    worker = by_kind(example, "Deployment")["tokenrelay-worker"]
    worker_pod = worker["spec"]["template"]["spec"]
    assert worker_pod["terminationGracePeriodSeconds"] > int(config["TOKENRELAY_WORKER_DRAIN_S"])
    assert worker["spec"]["replicas"] == 3  # the overlay's replicas


def test_example_redis_keeps_an_append_only_file(example: list[dict[str, Any]]) -> None:
    redis = by_kind(example, "StatefulSet")["redis"]
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    assert container["args"][container["args"].index("--appendonly") + 1] == "yes"
    (mount,) = container["volumeMounts"]
    assert container["args"][container["args"].index("--dir") + 1] == mount["mountPath"]
    config = by_kind(example, "ConfigMap")["tokenrelay-config"]["data"]
    service = by_kind(example, "Service")["redis"]
    assert (
        config["TOKENRELAY_REDIS_URL"] == f"redis://redis:{service['spec']['ports'][0]['port']}/0"
    )


def test_prometheus_scrapes_the_ports_the_pods_announce(example: list[dict[str, Any]]) -> None:
    scrape = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    assert set(jobs) == {
        "tokenrelay-pods",
        "tokenrelay-compose-gateways",
        "tokenrelay-compose-workers",
    }
    for deployment in by_kind(example, "Deployment").values():
        template = deployment["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        ports = {p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) in ports
        assert annotations["prometheus.io/path"] == "/metrics"
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    worker_port = compose["services"]["worker"]["environment"]["TOKENRELAY_WORKER_METRICS_PORT"]
    assert jobs["tokenrelay-compose-workers"]["dns_sd_configs"][0]["port"] == int(worker_port)


# --- Compose, Dockerfile, nginx -------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    # YAML anchors and merge keys resolved (as Compose resolves them), then the Compose
    # Specification, strictly: an unknown key or a wrong value fails
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    PyCompose.from_yaml(yaml.safe_dump(loaded))
    return loaded


def test_the_compose_checker_refuses_what_compose_would() -> None:
    with pytest.raises(Exception, match="restart"):
        PyCompose.from_yaml("services:\n  a:\n    image: x\n    restart: sometimes\n")
    with pytest.raises(Exception, match="bogus"):
        PyCompose.from_yaml("services:\n  a:\n    image: x\n    bogus: 1\n")


def test_compose_describes_the_topology(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "gateway", "worker", "nginx"}
    redis = services["redis"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    for name in ("gateway", "worker"):
        service = services[name]
        assert service["deploy"]["replicas"] >= 2
        assert service["build"] == "." and (REPO / "Dockerfile").is_file()
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        check_cli(service["command"])
        env = service["environment"]
        assert set(env) <= SETTINGS | UPSTREAM_ENV
        assert env["TOKENRELAY_REDIS_URL"].startswith("redis://redis:")
        # the upstream key reaches the workers only
        assert (set(env) & UPSTREAM_ENV != set()) == (name == "worker")
    assert "readyz" in services["gateway"]["healthcheck"]["test"][-1]
    nginx = services["nginx"]
    (volume,) = nginx["volumes"]
    source = volume.split(":")[0]
    assert (REPO / source).resolve() == REPO / "deploy/nginx/tokenrelay.conf"
    assert nginx["depends_on"]["gateway"]["condition"] == "service_healthy"
    listen = re.search(r"listen (\d+);", (REPO / source).read_text())
    assert listen is not None
    assert nginx["ports"] == [f"{listen[1]}:{listen[1]}"]


def test_dockerfile_builds_one_non_root_image_of_what_the_package_needs() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    instructions = [
        line.split(None, 1)
        for line in dockerfile.splitlines()
        if line.strip() and not line.startswith((" ", "#"))
    ]
    keywords = [keyword for keyword, *_ in instructions]
    assert keywords[0] == "FROM" and "slim" in instructions[0][1]
    user = [rest for keyword, rest in instructions if keyword == "USER"]
    assert user and user[-1].strip() not in ("root", "0")
    copied = [rest.split()[0] for keyword, rest in instructions if keyword == "COPY"]
    for package in ("shared", "producer", "gateway", "tokenrelay", "web"):
        assert package in copied, f"the image lacks {package}/"
    entrypoint = next(rest for keyword, rest in instructions if keyword == "ENTRYPOINT")
    command = next(rest for keyword, rest in instructions if keyword == "CMD")
    assert entrypoint.strip() == '["tokenrelay"]'
    check_cli(yaml.safe_load(command))
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored
    assert not {"shared", "producer", "gateway", "tokenrelay", "web"} & set(ignored)


def test_nginx_accepts_the_sse_config(tmp_path: Path) -> None:
    config = nginx_config(tmp_path, ["127.0.0.1:1", "127.0.0.1:2"], 1)
    done = subprocess.run(
        [nginx_binary(), "-t", "-c", str(config), "-e", str(tmp_path / "nginx-error.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    site = (REPO / "deploy/nginx/tokenrelay.conf").read_text()
    for directive in (
        "proxy_buffering off;",
        "proxy_read_timeout 1h;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
    ):
        assert directive in site
