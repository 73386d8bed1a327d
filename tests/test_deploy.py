"""Deployment artefacts, checked without a Docker engine or a cluster (see deploy/README.md).

- Both kustomize overlays render (`kubectl kustomize`), and every document validates offline: built-in
  kinds against Kubernetes' schemas (`kubernetes-validate`, strict: unknown fields are errors), the CRDs
  (KEDA ScaledObject, ServiceMonitor) against the structural schemas in tests/data/crd-schemas (strict
  too, with Kubernetes' own ObjectMeta / LabelSelector / HPA behavior definitions).
- The manifests wire the service together: names, ports, probes, volumes, KEDA's Redis list, grace
  period, network policy.
- docker-compose.yml validates against the Compose Specification schema (vendored in tests/data).
- The Dockerfile lints clean with hadolint, the container scripts with shellcheck.
- The images' commands start here as processes with the environment the compose file and the rendered
  manifests give them (only addresses, ports, paths and credentials replaced by local ones), against a
  real Redis and a real S3 server; the API runs with torch and the other `model` packages made
  unimportable, as in its image.
- Every metric the Grafana dashboard queries is one the code exports (or an explicitly external one).

Tools missing make tests fail with how to install them, never skip.
"""

from __future__ import annotations

import base64
import copy
import functools
import importlib.resources
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema
import kubernetes_validate
import pytest
import redis
import yaml
from referencing import Registry, Resource

from service.metrics import GPU_MEMORY_KINDS, ServiceMetrics
from tests.support.ports import free_port
from tests.support.processes import REPO, VsrProcess
from tests.support.redis_server import RedisServer
from tests.support.s3_server import S3Server
from tests.support.service import make_tenant

DEPLOY = REPO / "deploy"
DATA = Path(__file__).parent / "data"
OVERLAYS = ("cpu", "gpu")
K8S_VERSION = "1.32.0"  # kubectl on the project's machines is 1.32; kubernetes-validate ships 1.25-1.37
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): DATA / "crd-schemas" / "scaledobject-keda.sh-v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): DATA
    / "crd-schemas"
    / "servicemonitor-monitoring.coreos.com-v1.json",
}
# The `model` extra: none of it may be imported by the API (its image installs the base dependencies).
MODEL_PACKAGES = ("torch", "safetensors", "av", "tqdm", "PIL", "onnx", "onnxruntime", "onnxscript")
PIP_HINT = "pip install -e '.[dev]' (make test does)"


def tool(name: str, hint: str = PIP_HINT) -> str:
    """A command-line tool, from this virtual environment first; fail (never skip) if it is missing."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"`{name}` is not installed: {hint}")
    return found


# ---------------------------------------------------------------------------------------------------
# The Dockerfile, parsed: stages, their environment (inherited from a parent stage) and commands.


@dataclass
class Stage:
    name: str
    base: str
    env: dict[str, str] = field(default_factory=dict)
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    user: str | None = None
    healthcheck: str | None = None
    runs: list[str] = field(default_factory=list)
    copies: list[str] = field(default_factory=list)


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        word, _, rest = (pending + stripped).partition(" ")
        instructions.append((word.upper(), rest.strip()))
        pending = ""
    return instructions


def dockerfile_stages(path: Path = REPO / "Dockerfile") -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for word, rest in dockerfile_instructions(path.read_text()):
        if word == "FROM":
            parts = rest.split()
            assert len(parts) == 3 and parts[1].upper() == "AS", f"FROM without a stage name: {rest}"
            parent = stages.get(parts[0])
            stage = Stage(parts[2], parts[0], env=dict(parent.env) if parent else {})
            stages[stage.name] = stage
            continue
        assert stage is not None, f"{word} before FROM"
        if word == "ENV":
            for token in shlex.split(rest):
                key, sep, value = token.partition("=")
                assert sep, f"ENV must use KEY=VALUE: {rest}"
                stage.env[key] = value
        elif word in ("CMD", "ENTRYPOINT"):
            value = json.loads(rest)  # exec form only: signals reach the process
            assert isinstance(value, list) and all(isinstance(v, str) for v in value), rest
            setattr(stage, word.lower(), value)
        elif word == "USER":
            stage.user = rest
        elif word == "HEALTHCHECK":
            stage.healthcheck = rest
        elif word == "RUN":
            stage.runs.append(rest)
        elif word == "COPY":
            stage.copies.append(rest)
    return stages


TARGETS = ("api", "worker-cpu", "worker-gpu")


def image_target(image: str) -> str | None:
    """The Dockerfile target an image reference was built from (None: a third-party image)."""
    name = image.rsplit("/", 1)[-1].split("@")[0].split(":")[0]
    return {"fastvsr-api": "api", "fastvsr-worker-cpu": "worker-cpu", "fastvsr-worker-gpu": "worker-gpu"}.get(
        name
    )


def image_command(target: str) -> list[str]:
    stage = dockerfile_stages()[target]
    return [*(stage.entrypoint or []), *(stage.cmd or [])]


def vsr_env(env: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in env.items() if key.startswith("VSR_")}


# ---------------------------------------------------------------------------------------------------
# The compose file and the rendered manifests, and the environment each gives a container.

INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def compose_file() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def interpolate(value: str) -> str:
    """Compose interpolation with every variable unset: `${X:-default}` gives the default."""
    if "$$" in value:
        return value.replace("$$", "$")
    return INTERPOLATION.sub(lambda m: m.group("default") or "", value)


def env_file_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's environment: env files (their committed `.example`), then `environment`."""
    env: dict[str, str] = {}
    for entry in service.get("env_file", []):
        path = REPO / (entry if isinstance(entry, str) else entry["path"])
        env |= env_file_values(path.with_name(path.name + ".example"))
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return env | {key: interpolate(str(value)) for key, value in environment.items()}


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = tool("kubectl", "kubectl (with kustomize) is on the project's machines; see kubernetes.io/docs")
    result = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {overlay: render(overlay) for overlay in OVERLAYS}


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The document of `kind` whose name is `name` (or `name-<hash>`, as kustomize generators name)."""
    matches = [
        d
        for d in docs
        if d["kind"] == kind and re.fullmatch(rf"{re.escape(name)}(-[a-z0-9]{{10}})?", d["metadata"]["name"])
    ]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} documents"
    return matches[0]


def container(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    spec = find(docs, kind, name)["spec"]["template"]["spec"]
    assert len(spec["containers"]) == 1
    result: dict[str, Any] = spec["containers"][0]
    return result


def manifest_env(docs: list[dict[str, Any]], ctr: dict[str, Any]) -> dict[str, str]:
    """What a container sees: its image's ENV, then envFrom (in order), then env."""
    target = image_target(ctr["image"])
    env = dict(dockerfile_stages()[target].env) if target else {}
    for source in ctr.get("envFrom", []):
        if "configMapRef" in source:
            env |= find(docs, "ConfigMap", source["configMapRef"]["name"])["data"]
        else:
            data = find(docs, "Secret", source["secretRef"]["name"])["data"]
            env |= {key: base64.b64decode(value).decode() for key, value in data.items()}
    for item in ctr.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            data = find(docs, "Secret", ref["name"])["data"]
            env[item["name"]] = base64.b64decode(data[ref["key"]]).decode()
    return env


def labels_match(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        if expr["operator"] != "In" or labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def pod_labels(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, str]:
    labels: dict[str, str] = find(docs, kind, name)["spec"]["template"]["metadata"]["labels"]
    return labels


# ---------------------------------------------------------------------------------------------------
# Kubernetes: render, validate, wiring.


@functools.cache
def crd_validator(schema_path: Path) -> jsonschema.protocols.Validator:
    schemas = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    definitions = json.loads((schemas / f"v{K8S_VERSION}-local-strict" / "_definitions.json").read_text())
    registry: Registry[Any] = Registry().with_resource(
        "https://kubernetes.io/api/_definitions.json", Resource.from_contents(definitions)
    )
    schema = json.loads(schema_path.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validation_errors(doc: dict[str, Any]) -> list[str]:
    where = f"{doc['kind']}/{doc['metadata']['name']}"
    crd = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    if crd is not None:
        return [f"{where}: {list(e.path)}: {e.message}" for e in crd_validator(crd).iter_errors(doc)]
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{where}: {list(exc.path)}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"{where}: {exc.message} (add a schema to CRD_SCHEMAS)"]
    return []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_every_document_validates(
    overlay: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    docs = rendered[overlay]
    kinds = {d["kind"] for d in docs}
    expected = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ScaledObject"}
    assert expected | {"ServiceMonitor", "Secret", "NetworkPolicy", "StatefulSet"} <= kinds
    errors = [error for doc in docs for error in validation_errors(doc)]
    assert not errors, "\n".join(errors)
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"vsr"}


def test_the_validators_reject_unknown_fields_and_wrong_types(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The validation above is not vacuous: a misspelt field or a number for a string fails it."""
    docs = rendered["gpu"]
    deployment = copy.deepcopy(find(docs, "Deployment", "vsr-worker"))
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 10
    assert validation_errors(deployment)
    scaled = copy.deepcopy(find(docs, "ScaledObject", "vsr-worker"))
    scaled["spec"]["triggers"][0]["metadata"]["listLength"] = 1  # KEDA metadata is map[string]string
    assert validation_errors(scaled)
    scaled = copy.deepcopy(find(docs, "ScaledObject", "vsr-worker"))
    scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["window"] = 1
    assert validation_errors(scaled)
    monitor = copy.deepcopy(find(docs, "ServiceMonitor", "vsr-worker"))
    monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"
    assert validation_errors(monitor)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifests_wire_the_service_together(overlay: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered[overlay]
    namespace = find(docs, "Deployment", "vsr-api")["metadata"]["namespace"]
    api = container(docs, "Deployment", "vsr-api")
    worker = container(docs, "Deployment", "vsr-worker")
    api_env, worker_env = manifest_env(docs, api), manifest_env(docs, worker)
    assert image_target(api["image"]) == "api"
    assert image_target(worker["image"]) == f"worker-{overlay}"
    for env in (api_env, worker_env):
        assert env["VSR_REDIS_URL"] and env["VSR_S3__BUCKET"] and env["VSR_S3__ACCESS_KEY_ID"]

    # The API: the image's port, /readyz for readiness, /healthz for liveness, CPU requests for the HPA.
    api_port = int(image_command("api")[image_command("api").index("--port") + 1])
    assert api["ports"][0]["containerPort"] == api_port
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    hpa = find(docs, "HorizontalPodAutoscaler", "vsr-api")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vsr-api"}
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"] and api["resources"]["requests"]["cpu"]

    # Mounted where the settings look: tenants file, data directory, engine cache.
    for ctr, env in ((api, api_env), (worker, worker_env)):
        mounts = {m["mountPath"]: m["name"] for m in ctr["volumeMounts"]}
        assert Path(env["VSR_TENANTS_FILE"]).parent.as_posix() in mounts
        assert env["VSR_DATA_DIR"] in mounts
    worker_mounts = {m["name"]: m["mountPath"] for m in worker["volumeMounts"]}
    pod = find(docs, "Deployment", "vsr-worker")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    tenants_secret = find(docs, "Secret", volumes["tenants"]["secret"]["secretName"])
    assert "tenants.json" in tenants_secret["data"]

    # Worker: metrics probes, grace period over the job timeout, the drain hook.
    metrics_port = int(worker_env["VSR_WORKER_METRICS_PORT"])
    assert worker["ports"] == [{"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    assert pod["terminationGracePeriodSeconds"] > int(worker_env["VSR_JOB_TIMEOUT_S"])
    assert worker["lifecycle"]["preStop"]["exec"]["command"] == ["vsr-drain"]
    if overlay == "gpu":
        assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert worker_mounts["engine-cache"] == worker_env["VSR_ENGINE__CACHE_DIR"]
        claim = find(
            docs, "PersistentVolumeClaim", volumes["engine-cache"]["persistentVolumeClaim"]["claimName"]
        )
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
        # The startup probe outlasts the entrypoint's wait for another pod's engine build.
        script = (DEPLOY / "docker" / "worker-gpu-entrypoint.sh").read_text()
        build_wait_s = int(re.findall(r"VSR_ENGINE_BUILD_WAIT_S:-(\d+)", script)[0])
        startup = worker["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] > build_wait_s

    # KEDA: the worker Deployment, on RQ's list for VSR_QUEUE_NAME in the Redis of VSR_REDIS_URL.
    scaled = find(docs, "ScaledObject", "vsr-worker")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "vsr-worker" and scaled["minReplicaCount"] == 0
    assert scaled["cooldownPeriod"] >= int(worker_env["VSR_JOB_TIMEOUT_S"])
    (trigger,) = scaled["triggers"]
    queue = worker_env.get("VSR_QUEUE_NAME", "vsr")
    assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == f"rq:queue:{queue}"
    redis_url = urlsplit(worker_env["VSR_REDIS_URL"])
    redis_service = find(docs, "Service", redis_url.hostname or "")
    assert trigger["metadata"]["address"] == (
        f"{redis_service['metadata']['name']}.{namespace}.svc.cluster.local:{redis_url.port}"
    )
    assert trigger["metadata"]["databaseIndex"] == redis_url.path.strip("/")
    assert redis_url.port in [p["port"] for p in redis_service["spec"]["ports"]]
    redis_args = container(docs, "StatefulSet", "vsr-redis")["args"]
    assert redis_args[redis_args.index("--appendonly") + 1] == "yes"

    # PodDisruptionBudgets and ServiceMonitors reach the pods they are meant for.
    for name in ("vsr-api", "vsr-worker"):
        pdb = find(docs, "PodDisruptionBudget", name)["spec"]
        assert labels_match(pdb["selector"], pod_labels(docs, "Deployment", name))
        monitor = find(docs, "ServiceMonitor", name)["spec"]
        services = [
            s
            for s in docs
            if s["kind"] == "Service" and labels_match(monitor["selector"], s["metadata"]["labels"])
        ]
        assert len(services) == 1
        assert monitor["endpoints"][0]["port"] in [p["name"] for p in services[0]["spec"]["ports"]]
        assert labels_match(
            {"matchLabels": services[0]["spec"]["selector"]}, pod_labels(docs, "Deployment", name)
        )

    # Worker egress: DNS, Redis, S3, and webhooks (public addresses on 80/443) only.
    policy = find(docs, "NetworkPolicy", "vsr-worker")["spec"]
    assert labels_match(policy["podSelector"], pod_labels(docs, "Deployment", "vsr-worker"))
    assert "Egress" in policy["policyTypes"]
    rules = policy["egress"]
    assert all(rule.get("ports") and rule.get("to") for rule in rules), "a rule without ports or peers"
    ports = [sorted((p["port"], p["protocol"]) for p in rule["ports"]) for rule in rules]
    assert [(53, "TCP"), (53, "UDP")] in ports
    s3_url = urlsplit(worker_env["VSR_S3__ENDPOINT_URL"])
    for service_name, port in ((redis_url.hostname, redis_url.port), (s3_url.hostname, s3_url.port)):
        target = find(docs, "Service", str(service_name))["spec"]["selector"]
        assert any(
            labels_match(peer.get("podSelector", {}), target)
            and "namespaceSelector" not in peer
            and [p["port"] for p in rule["ports"]] == [port]
            for rule in rules
            for peer in rule["to"]
        ), f"no egress to {service_name}:{port}"
    wide = [rule for rule in rules if any("ipBlock" in peer for peer in rule["to"])]
    assert len(wide) == 1 and sorted(p["port"] for p in wide[0]["ports"]) == [80, 443]
    v4 = next(p["ipBlock"] for p in wide[0]["to"] if p["ipBlock"]["cidr"] == "0.0.0.0/0")
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(v4["except"])

    # Secrets are placeholders, never real ones.
    service_secret = find(docs, "Secret", "vsr-service-secrets")["data"]
    for key in ("VSR_S3__ACCESS_KEY_ID", "VSR_S3__SECRET_ACCESS_KEY"):
        assert base64.b64decode(service_secret[key]).decode().startswith("REPLACEME")
    tenants = json.loads(base64.b64decode(tenants_secret["data"]["tenants.json"]))
    assert all(set(digest) == {"0"} for t in tenants for digest in t["api_key_sha256"])


# ---------------------------------------------------------------------------------------------------
# Compose, Prometheus, Grafana.


def test_compose_file_matches_the_compose_specification() -> None:
    schema = json.loads((DATA / "compose-spec" / "compose-spec.json").read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    compose = compose_file()
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)
    broken = copy.deepcopy(compose)
    broken["services"]["api"]["enviroment"] = {}
    assert not validator.is_valid(broken)  # the schema is strict about field names


def test_compose_stack_is_complete_and_its_files_exist() -> None:
    compose = compose_file()
    services = compose["services"]
    assert {"redis", "s3", "s3-init", "api", "worker-gpu", "worker-cpu", "prometheus", "grafana"} <= set(
        services
    )
    redis_command = services["redis"]["command"]
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
    assert services["worker-cpu"]["profiles"] == ["cpu"] and "profiles" not in services["worker-gpu"]
    assert services["dcgm-exporter"]["profiles"] == ["gpu"]
    (device,) = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and device["count"] == 1
    for name, service in services.items():
        if "build" in service:
            assert service["build"]["target"] in TARGETS
            assert image_target(service["image"]) == service["build"]["target"], name
        else:
            assert re.search(r":v?\d+(\.\d+)+", service["image"]), f"{name}: not an exact version tag"
        for entry in service.get("env_file", []):
            path = REPO / entry
            assert path.with_name(path.name + ".example").is_file(), f"{entry}.example missing"
            ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=REPO, check=False)
            assert ignored.returncode == 0, f"{entry} holds secrets: git must ignore it"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                path = REPO / source
                assert path.exists() or path.name == "tenants.json", f"{name}: {source} missing"
    for name in ("worker-gpu", "worker-cpu"):
        env = compose_env(services[name])
        grace_s = int(services[name]["stop_grace_period"].removesuffix("m")) * 60
        assert grace_s > int(env["VSR_JOB_TIMEOUT_S"])
    gpu_mounts = dict(v.split(":")[:2] for v in services["worker-gpu"]["volumes"])
    assert gpu_mounts["engine-cache"] == dockerfile_stages()["worker-gpu"].env["VSR_ENGINE__CACHE_DIR"]
    tenants = json.loads((DEPLOY / "compose" / "tenants.example.json").read_text())
    assert tenants and all(set(d) == {"0"} for t in tenants for d in t["api_key_sha256"])


def test_prometheus_scrapes_the_api_workers_and_gpu_exporter() -> None:
    services = compose_file()["services"]
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api_port = int(image_command("api")[image_command("api").index("--port") + 1])
    stages = dockerfile_stages()
    worker_ports = {
        int((stages[name].env | compose_env(services[name]))["VSR_WORKER_METRICS_PORT"])
        for name in ("worker-gpu", "worker-cpu")
    }
    assert len(worker_ports) == 1
    expected = {
        "vsr-api": ({"api"}, api_port),
        "vsr-worker": ({"worker-gpu", "worker-cpu"}, worker_ports.pop()),
        "dcgm": ({"dcgm-exporter"}, 9400),
    }
    for job_name, (names, port) in expected.items():
        (sd,) = jobs[job_name]["dns_sd_configs"]
        assert set(sd["names"]) == names and names <= set(services) and sd["port"] == port


KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or"}
KEYWORDS |= {"unless", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (not functions, labels, keywords or Grafana variables)."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\{?\w+\}?", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end() :].lstrip().startswith("(") or match.group() in KEYWORDS:
            continue
        names.add(match.group())
    return names


def exported_metric_names() -> set[str]:
    """Every sample name the service's registry exposes (a counter `x` is exposed as `x_total`)."""
    metrics = ServiceMetrics()
    metrics.watch_queue(lambda: 0, lambda: 0)
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
    names = set()
    for family in metrics.registry.collect():
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "vsr.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def test_promql_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, stage) (rate(vsr_stage_seconds_bucket{stage="decode"}'
        "[$__rate_interval]))) / ignoring(x) sum(up) + DCGM_FI_DEV_FB_USED offset 5m"
    )
    assert promql_metric_names(expr) == {"vsr_stage_seconds_bucket", "up", "DCGM_FI_DEV_FB_USED"}


def test_every_dashboard_metric_is_exported_by_the_code() -> None:
    exported = exported_metric_names()
    assert {"vsr_jobs_total", "vsr_stage_seconds_bucket", "vsr_queue_depth", "vsr_frames_total"} <= exported
    expressions = dashboard_expressions()
    used = set().union(*(promql_metric_names(expr) for expr in expressions))
    assert not used - exported, f"not exported by service/metrics.py: {used - exported}"  # no exemption
    # The panels the deployment issue asks for.
    assert {"vsr_jobs_total", "vsr_queue_depth", "vsr_stage_seconds_bucket", "vsr_macs_total"} <= used
    assert {"vsr_frames_total", "vsr_gpu_memory_bytes"} <= used
    stage_quantiles = [e for e in expressions if "vsr_stage_seconds_bucket" in e]
    assert any("histogram_quantile(0.5," in e for e in stage_quantiles)
    assert any("histogram_quantile(0.95," in e for e in stage_quantiles)
    assert any(e.startswith("sum by (component) (rate(vsr_macs_total") for e in expressions)
    assert any(e.startswith("sum(rate(vsr_frames_total") for e in expressions)
    # GPU memory comes from the workers themselves, with kinds the code sets.
    gpu_kinds = {kind for e in expressions for kind in re.findall(r'vsr_gpu_memory_bytes\{kind="(\w+)"\}', e)}
    assert {"device_used", "peak"} <= gpu_kinds <= set(GPU_MEMORY_KINDS)


def test_grafana_provisioning_points_the_dashboard_at_prometheus() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["type"] == "prometheus" and urlsplit(source["url"]).hostname in compose_file()["services"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "fastvsr.yml").read_text())["providers"]
    grafana_mounts = dict(v.split(":")[:2] for v in compose_file()["services"]["grafana"]["volumes"])
    assert grafana_mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "vsr.json").read_text())
    (variable,) = dashboard["templating"]["list"]
    assert variable["type"] == "datasource" and variable["current"]["value"] == source["uid"]
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


# ---------------------------------------------------------------------------------------------------
# Dockerfile and container scripts.


def test_dockerfile_lints_clean_with_hadolint(tmp_path: Path) -> None:
    config = tmp_path / "hadolint.yaml"  # no user or project config may relax a rule
    config.write_text("{}\n")
    result = subprocess.run(
        [
            tool("hadolint"),
            *("--config", str(config), "--failure-threshold", "style", "--disable-ignore-pragma"),
            *("--no-color", str(REPO / "Dockerfile")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def shellcheck(shell: str, scripts: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("shellcheck"), f"--shell={shell}", "--severity=style", *map(str, scripts)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_container_scripts_pass_shellcheck() -> None:
    scripts = sorted((DEPLOY / "docker").glob("*.sh"))
    assert scripts
    result = shellcheck("sh", scripts)
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(os.access(script, os.X_OK) for script in scripts)


def test_device_scripts_pass_shellcheck() -> None:
    """bench/gpu_check.sh runs only on a lent GPU machine: a script error there costs device time."""
    scripts = sorted((REPO / "bench").glob("*.sh"))
    assert {script.name for script in scripts} >= {"gpu_check.sh", "device_wheels.sh"}
    result = shellcheck("bash", scripts)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_targets() -> None:
    stages = dockerfile_stages()
    for target in TARGETS:
        stage = stages[target]
        assert stage.user == "10001:10001", f"{target} must run as the non-root user"
        assert stage.healthcheck and "CMD" in stage.healthcheck
        assert stage.env["VSR_TENANTS_FILE"] and stage.env["VSR_DATA_DIR"]
    for stage in stages.values():
        if stage.base not in stages:
            assert re.search(r":v?\d+\.\d+\.\d+", stage.base) and "latest" not in stage.base, stage.base
    assert image_command("api")[:3] == ["uvicorn", "service.api.app:app_from_env", "--factory"]
    assert image_command("worker-cpu") == ["vsr", "worker"]
    assert image_command("worker-gpu") == ["vsr-gpu-entrypoint", "vsr", "worker"]
    # API: base dependencies only; workers: torch 2.13.0 from the CPU / CUDA index, then the model extra.
    api_runs = " ".join(stages["api-build"].runs)
    assert "torch" not in api_runs and "[" not in api_runs
    assert "download.pytorch.org/whl/cpu torch==2.13.0" in " ".join(stages["worker-cpu-build"].runs)
    gpu_runs = " ".join(stages["worker-gpu-build"].runs)
    assert "torch==2.13.0" in gpu_runs and "pypi.nvidia.com tensorrt" in gpu_runs
    assert stages["worker-gpu"].env["VSR_ENGINE__BACKEND"] == "tensorrt"
    # The CPU worker serves torch on tcmalloc: the library is installed and linked where LD_PRELOAD points.
    cpu = stages["worker-cpu"]
    assert cpu.env["VSR_ENGINE__BACKEND"] == "torch"
    preload = cpu.env["LD_PRELOAD"]
    assert Path(preload).name == "libtcmalloc_minimal.so.4"
    (install,) = [run for run in cpu.runs if "libtcmalloc-minimal4=" in run]
    assert "ln -s " in install and f"{preload} " in install and f"test -e {preload}" in install
    # Files the build copies from the context are in it (.dockerignore lets them through).
    allowed = [line[1:] for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")]
    for stage in stages.values():
        for copy_args in stage.copies:
            if "--from=" in copy_args:
                continue
            sources = [a for a in shlex.split(copy_args) if not a.startswith("--")][:-1]
            for source in sources:
                assert (REPO / source).exists(), source
                assert any(source.rstrip("/") == a.rstrip("/") or source.startswith(a) for a in allowed)


def test_images_install_every_file_of_the_packages(tmp_path: Path) -> None:
    """What the images install: the source stage's COPY lines, then `pip install /src` (a wheel)."""
    source = tmp_path / "src"
    copied: list[Path] = []
    for copy_args in dockerfile_stages()["source"].copies:
        *paths, dest = shlex.split(copy_args)
        for path in paths:
            target = source / dest / Path(path).name if dest.endswith("/") else source / dest
            if (REPO / path).is_dir():
                shutil.copytree(REPO / path, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                copied.append(REPO / path)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / path, target)
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"),
            *("-q", "-w", str(tmp_path / "wheel"), str(source)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "vsr = vsr.cli:main" in archive.read(entry_points).decode()
    expected = {
        path.relative_to(REPO).as_posix()
        for package in copied
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert {"engines/settings.py", "service/api/app.py", "models/configs/fastvsr-tiny.json"} <= expected
    assert not expected - names, f"not installed by `pip install /src`: {sorted(expected - names)}"


def test_gpu_entrypoint_builds_engines_under_a_lock_then_execs_the_worker(tmp_path: Path) -> None:
    """The entrypoint's logic, with a stand-in `vsr` (no GPU or TensorRT here) and the image's ENV."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake_vsr = bin_dir / "vsr"
    fake_vsr.write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\n[ "$1" != export ] || exit "${{FAKE_EXPORT_RC:-0}}"\n'
    )
    fake_vsr.chmod(0o755)
    tenants = tmp_path / "tenants.json"
    tenants.write_text("[]")
    cache = tmp_path / "engines"
    image_env = dockerfile_stages()["worker-gpu"].env
    base_env = {
        "PATH": f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin",
        **vsr_env(image_env),
        "VSR_ENGINE__CACHE_DIR": str(cache),
        "VSR_TENANTS_FILE": str(tenants),
    }

    def run(**extra: str) -> tuple[int, list[str]]:
        calls.unlink(missing_ok=True)
        result = subprocess.run(
            ["sh", str(DEPLOY / "docker" / "worker-gpu-entrypoint.sh"), *image_command("worker-gpu")[1:]],
            cwd=REPO,
            env=base_env | extra,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return result.returncode, calls.read_text().splitlines() if calls.exists() else []

    assert run() == (0, ["export trt --precision fp16 --device cuda --config fastvsr-tiny", "worker"])
    assert (cache / ".build.lock").exists()
    assert run(VSR_MODELS='["baseline-tiny"]', VSR_MODEL_DIR="/models/b") == (
        0,
        ["export trt --precision fp16 --device cuda --config baseline-tiny --model /models/b", "worker"],
    )
    assert run(FAKE_EXPORT_RC="3") == (3, ["export trt --precision fp16 --device cuda --config fastvsr-tiny"])
    assert run(VSR_ENGINE_PREBUILD="0") == (0, ["worker"])
    assert run(VSR_ENGINE__BACKEND="onnxruntime") == (0, ["worker"])
    assert run(VSR_ENGINE__PRECISION="bf16")[0] == 2


# ---------------------------------------------------------------------------------------------------
# The images' commands, started here with the deployed environment.


@dataclass
class ImageProcess(VsrProcess):
    """A container's command run as a local process (its executable mapped to this environment)."""

    pythonpath: str = ""

    def start(self) -> ImageProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        clean = {key: value for key, value in os.environ.items() if not key.startswith("VSR_")}
        clean.pop("PYTHONPATH", None)
        extra = {"PYTHONPATH": self.pythonpath} if self.pythonpath else {}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                local_argv(self.args),
                cwd=REPO,
                env={**clean, "OMP_NUM_THREADS": "2", **extra, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self


def local_argv(argv: list[str]) -> list[str]:
    executables = {"uvicorn": [sys.executable, "-m", "uvicorn"], "vsr": [sys.executable, "-m", "vsr.cli"]}
    executables["python"] = [sys.executable]
    return [*executables[argv[0]], *argv[1:]]


def with_option(argv: list[str], option: str, value: str) -> list[str]:
    """`argv` with the value of `option` replaced (e.g. the port the image listens on)."""
    index = argv.index(option)
    return [*argv[: index + 1], value, *argv[index + 2 :]]


def without_model_packages(root: Path) -> str:
    """A PYTHONPATH entry on which every `model`-extra package fails to import, as in the api image."""
    for name in MODEL_PACKAGES:
        package = root / name
        package.mkdir(parents=True, exist_ok=True)
        message = f"No module named {name!r} (not in the api image)"
        (package / "__init__.py").write_text(f"raise ModuleNotFoundError({message!r}, name={name!r})\n")
    return str(root)


@dataclass
class Deployed:
    """One way of deploying (compose, or a rendered overlay): the commands and environments it runs."""

    name: str
    api_argv: list[str]
    api_env: dict[str, str]
    worker_argv: list[str]
    worker_env: dict[str, str]
    bootstrap_argv: list[str]
    bootstrap_env: dict[str, str]
    bootstrap_script: Path
    tenants: list[dict[str, Any]]
    api_probes: list[str]
    worker_probes: list[str]


def from_compose() -> Deployed:
    services = compose_file()["services"]
    api, worker, init = services["api"], services["worker-cpu"], services["s3-init"]
    mounts = {target: source for source, target, *_ in (v.split(":") for v in init["volumes"])}
    return Deployed(
        name="compose",
        api_argv=api.get("command", image_command(api["build"]["target"])),
        api_env=vsr_env(dockerfile_stages()["api"].env | compose_env(api)),
        worker_argv=worker.get("command", image_command(worker["build"]["target"])),
        worker_env=vsr_env(dockerfile_stages()["worker-cpu"].env | compose_env(worker)),
        bootstrap_argv=init["command"],
        bootstrap_env=vsr_env(dockerfile_stages()["api"].env | compose_env(init)),
        bootstrap_script=REPO / mounts[init["command"][1]],
        tenants=json.loads((DEPLOY / "compose" / "tenants.example.json").read_text()),
        api_probes=["/healthz", "/readyz"],
        worker_probes=["/metrics"],
    )


def from_overlay(docs: list[dict[str, Any]], tmp_path: Path) -> Deployed:
    api = container(docs, "Deployment", "vsr-api")
    worker = container(docs, "Deployment", "vsr-worker")
    job = container(docs, "Job", "vsr-s3-bootstrap")
    job_pod = find(docs, "Job", "vsr-s3-bootstrap")["spec"]["template"]["spec"]
    (script_mount,) = job["volumeMounts"]
    (script_volume,) = [v for v in job_pod["volumes"] if v["name"] == script_mount["name"]]
    script_map = find(docs, "ConfigMap", script_volume["configMap"]["name"])["data"]
    script_name = Path(job["command"][1]).relative_to(script_mount["mountPath"]).as_posix()
    script = tmp_path / "configmap" / script_name
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(script_map[script_name])  # exactly what the Job runs
    tenants_secret = find(docs, "Secret", "vsr-tenants")["data"]["tenants.json"]

    def argv(ctr: dict[str, Any]) -> list[str]:
        target = image_target(ctr["image"])
        assert target is not None
        return [*ctr.get("command", image_command(target)), *ctr.get("args", [])]

    return Deployed(
        name="kubernetes",
        api_argv=argv(api),
        api_env=vsr_env(manifest_env(docs, api)),
        worker_argv=argv(worker),
        worker_env=vsr_env(manifest_env(docs, worker)),
        bootstrap_argv=job["command"],
        bootstrap_env=vsr_env(manifest_env(docs, job)),
        bootstrap_script=script,
        tenants=json.loads(base64.b64decode(tenants_secret)),
        api_probes=[api[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")],
        worker_probes=[
            worker[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")
        ],
    )


@dataclass
class Running:
    deployed: Deployed
    api: ImageProcess
    api_port: int
    worker: ImageProcess
    metrics_port: int
    api_key: str


def localize(env: dict[str, str], local: dict[str, str]) -> dict[str, str]:
    """The deployed environment with only addresses, ports, paths and credentials made local."""
    missing = {key for key in local if key not in env and key != "VSR_WORKER_METRICS_PORT"}
    assert not missing, f"the deployed environment lacks {missing}"
    return env | local


def bootstrap_bucket(deployed: Deployed, env: dict[str, str], pythonpath: str) -> None:
    """Run the S3 bootstrap step (compose's s3-init, the overlay's Job) as deployed."""
    argv = [deployed.bootstrap_argv[0], str(deployed.bootstrap_script), *deployed.bootstrap_argv[2:]]
    clean = {key: value for key, value in os.environ.items() if not key.startswith("VSR_")}
    result = subprocess.run(
        local_argv(argv),
        cwd=REPO,
        env=clean | {"PYTHONPATH": pythonpath} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"bucket {env['VSR_S3__BUCKET']}: " in result.stdout, result.stdout


def reap(process: subprocess.Popen[bytes], exit_code: list[int]) -> None:
    exit_code.append(process.wait(60))


@pytest.fixture
def deployments(
    tmp_path: Path,
    redis_server: RedisServer,
    s3_server: S3Server,
    rendered: dict[str, list[dict[str, Any]]],
) -> Iterator[list[Running]]:
    """The compose stack's and the cpu overlay's API and worker, started side by side (own Redis DBs)."""
    tenant = make_tenant("deploytest")
    entry = {**tenant.config.model_dump(mode="json"), "webhook_secret": tenant.secret}
    shadow = without_model_packages(tmp_path / "no-model-packages")
    started: list[Running] = []
    try:
        for db, deployed in enumerate((from_compose(), from_overlay(rendered["cpu"], tmp_path)), start=1):
            root = tmp_path / deployed.name
            root.mkdir()
            tenants = root / "tenants.json"  # the deployed placeholders, plus a tenant whose key we know
            tenants.write_text(json.dumps([*deployed.tenants, entry]))
            redis_url = f"redis://127.0.0.1:{redis_server.port}/{db}"
            client = redis.Redis.from_url(redis_url)
            client.flushdb()
            client.close()
            local = {
                "VSR_REDIS_URL": redis_url,
                "VSR_S3__ENDPOINT_URL": s3_server.endpoint,
                "VSR_S3__PUBLIC_ENDPOINT_URL": s3_server.endpoint,
                "VSR_S3__ACCESS_KEY_ID": s3_server.access_key,
                "VSR_S3__SECRET_ACCESS_KEY": s3_server.secret_key,
                "VSR_TENANTS_FILE": str(tenants),
            }
            s3_local = {key: value for key, value in local.items() if key.startswith("VSR_S3__")}
            bootstrap_bucket(
                deployed, localize(deployed.bootstrap_env, s3_local), f"{shadow}{os.pathsep}{REPO}"
            )
            api_port, metrics_port = free_port(), free_port()
            api_argv = with_option(deployed.api_argv, "--host", "127.0.0.1")
            api_env = localize(deployed.api_env, local | {"VSR_DATA_DIR": str(root / "api-data")})
            api = ImageProcess(
                with_option(api_argv, "--port", str(api_port)), api_env, root / "api.log", pythonpath=shadow
            ).start()
            worker_local = {
                "VSR_DATA_DIR": str(root / "worker-data"),
                "VSR_WORKER_METRICS_PORT": str(metrics_port),
            }
            worker_env = localize(deployed.worker_env, local | worker_local)
            worker = ImageProcess(deployed.worker_argv, worker_env, root / "worker.log").start()
            started.append(Running(deployed, api, api_port, worker, metrics_port, tenant.key))
            # One worker loading its model at a time: two at once on two cores take twice as long each.
            worker.wait_http(f"http://127.0.0.1:{metrics_port}/metrics", timeout=90)
        yield started
    finally:
        for running in started:
            running.worker.stop()
            running.api.stop()


def test_images_commands_start_with_the_deployed_environment_and_drain(deployments: list[Running]) -> None:
    """API and worker of the compose stack and of the cpu overlay: up, probes answer, they share Redis
    and the queue, and the preStop drain stops the worker cleanly (exit 0) and waits for it."""
    for running in deployments:
        name = running.deployed.name
        api_url = f"http://127.0.0.1:{running.api_port}"
        running.api.wait_http(f"{api_url}/healthz", timeout=60)
        for path in running.deployed.api_probes:
            response = httpx.get(f"{api_url}{path}", timeout=10)
            assert response.status_code == 200, f"{name} API {path}: {response.text}"
        assert "vsr_queue_depth" in httpx.get(f"{api_url}/metrics", timeout=10).text
        metrics_url = f"http://127.0.0.1:{running.metrics_port}"
        running.worker.wait_http(f"{metrics_url}/metrics", timeout=90)
        for path in running.deployed.worker_probes:
            response = httpx.get(f"{metrics_url}{path}", timeout=10)
            assert response.status_code == 200 and "vsr_frames_total" in response.text, (
                f"{name} worker {path}"
            )
        # API and worker agree on Redis and the queue: the API sees exactly this worker listening.
        headers = {"Authorization": f"Bearer {running.api_key}"}
        status = httpx.get(f"{api_url}/v1/status", headers=headers, timeout=10)
        assert status.status_code == 200, status.text
        body = status.json()
        assert body["workers"] == 1 and body["storage"] == "s3", body
        assert body["queue"] == running.deployed.worker_env.get("VSR_QUEUE_NAME", "vsr")

    for running in deployments:
        process = running.worker.process
        assert process is not None
        exit_code: list[int] = []
        reaper = threading.Thread(target=reap, args=(process, exit_code))
        reaper.start()  # reaps the worker (a zombie would still answer the script's `kill -0`)
        drain = subprocess.run(
            ["sh", str(DEPLOY / "docker" / "vsr-drain.sh")],
            env={**os.environ, "VSR_DRAIN_PID": str(process.pid)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        reaper.join(60)
        assert drain.returncode == 0 and "exited" in drain.stderr, drain.stderr
        assert exit_code == [0], running.worker.tail()
