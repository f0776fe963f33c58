"""deploy/ parses, and says what its comments claim: a dated nightly submission, GPU from zero."""

import configparser
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_kuberay_manifests_parse():
    docs = list(yaml.safe_load_all((DEPLOY / "kuberay/raycluster.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"RayCluster", "PersistentVolumeClaim"}
    groups = {g["groupName"]: g for g in kinds["RayCluster"]["spec"]["workerGroupSpecs"]}
    assert groups["cpu"]["minReplicas"] >= 1  # Serve replicas have somewhere to run (the head has 0 CPUs)
    gpu = groups["gpu"]
    assert gpu["minReplicas"] == 0 and gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    assert kinds["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]
    cron = yaml.safe_load((DEPLOY / "kuberay/nightly-cronjob.yaml").read_text())
    assert cron["kind"] == "CronJob" and len(cron["spec"]["schedule"].split()) == 5
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    # only CronJobSpec's own fields (strict `kubectl apply` refuses others, e.g. backoffLimit here)
    assert set(cron["spec"]) <= {"schedule", "timeZone", "concurrencyPolicy", "startingDeadlineSeconds", "suspend",
                                 "jobTemplate", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"}
    assert cron["spec"]["jobTemplate"]["spec"]["backoffLimit"] >= 1  # a crashed night is retried...
    command = " ".join(cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"])
    # ...under a submission id Ray has not seen (each retry is a new pod), resuming the batch
    assert 'nightly-$(date -u +%Y%m%d)-$(hostname)' in command and "unlearn nightly" in command


def test_systemd_units_parse():
    for name in ("unlearn-nightly.service", "unlearn-nightly.timer"):
        unit = configparser.ConfigParser(interpolation=None, strict=False)
        unit.read_string((DEPLOY / "systemd" / name).read_text())
        assert unit.has_section("Unit")
    service = configparser.ConfigParser(interpolation=None, strict=False)
    service.read_string((DEPLOY / "systemd/unlearn-nightly.service").read_text())
    assert "--submission-id" in service["Service"]["ExecStart"] and "unlearn nightly" in service["Service"]["ExecStart"]


def test_the_serve_config_is_valid_for_serve_and_for_the_builder():
    """`serve deploy` would accept it (Serve's own schema), and its args are the builder's
    (an unknown or out-of-range key fails here, not on the cluster)."""
    import pytest
    from ray.serve.schema import ServeDeploySchema

    from serving.app import AppArgs
    from serving.board import APP_NAME

    config = ServeDeploySchema.model_validate(yaml.safe_load((DEPLOY / "serve/serve-config.yaml").read_text()))
    [app] = config.applications
    assert app.name == APP_NAME and app.import_path == "serving.app:build"
    args = AppArgs.model_validate(app.args)
    assert args.min_replicas <= args.max_replicas
    with pytest.raises(ValueError):
        AppArgs.model_validate({**app.args, "replica": 2})


def test_the_rayservice_serves_the_shipped_serve_config():
    """The RayService's serveConfigV2 is deploy/serve/serve-config.yaml (kept in step here),
    its spec uses RayService fields only, and the replicas have a CPU group to run on."""
    service = yaml.safe_load((DEPLOY / "kuberay/rayservice.yaml").read_text())
    assert service["kind"] == "RayService" and service["apiVersion"] == "ray.io/v1"
    assert set(service["spec"]) <= {"serveConfigV2", "rayClusterConfig", "upgradeStrategy", "serviceUnhealthySecondThreshold",
                                    "deploymentUnhealthySecondThreshold", "serveService", "excludeHeadPodFromServeSvc"}
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == yaml.safe_load(
        (DEPLOY / "serve/serve-config.yaml").read_text())
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # no replica on the head
    [cpu] = cluster["workerGroupSpecs"]
    assert cpu["minReplicas"] >= 1 and "nvidia.com/gpu" not in cpu["template"]["spec"]["containers"][0]["resources"]["limits"]


def test_the_image_and_the_secret_match_what_the_manifests_read():
    """The Dockerfile builds on the Ray version the project pins (CPU by default, GPU by a
    build argument); the Secret holds every key a manifest reads from it."""
    import re

    pinned = re.search(r'"ray\[[^\]]*\]==([\d.]+)"', (DEPLOY.parent / "pyproject.toml").read_text()).group(1)
    dockerfile = (DEPLOY / "docker/Dockerfile").read_text()
    assert f"ARG RAY_VERSION={pinned}" in dockerfile and "ARG FLAVOR=cpu" in dockerfile
    assert re.findall(r"^FROM (.+)$", dockerfile, re.M) == ["rayproject/ray:${RAY_VERSION}-py311-${FLAVOR}"]
    assert "--build-arg FLAVOR=gpu" in dockerfile  # the GPU image, as its comment builds it
    secret = yaml.safe_load((DEPLOY / "kuberay/secret.example.yaml").read_text())
    keys = set(secret["stringData"])
    read = set()
    for name in ("raycluster.yaml", "rayservice.yaml", "nightly-cronjob.yaml"):
        text = (DEPLOY / "kuberay" / name).read_text()
        read |= set(re.findall(r"secretKeyRef: \{name: ray-unlearn, key: ([\w-]+)", text))
    assert read and read <= keys
    assert {"UNLEARN_LEDGER_URL", "MLFLOW_TRACKING_URI", "UNLEARN_TOKEN"} <= keys  # envFrom in the RayService


def kubernetes_objects():
    """Every core Kubernetes object in deploy/kuberay, and each KubeRay pod template as the
    core PodTemplate it is (containers, env, volumes: the parts kubectl would check)."""
    for path in sorted((DEPLOY / "kuberay").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["apiVersion"].startswith("ray.io/"):
                spec = doc["spec"].get("rayClusterConfig", doc["spec"])
                for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
                    yield f"{path.name} {group.get('groupName', 'head')}", {
                        "apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                        "template": group["template"]}
            else:
                yield f"{path.name} {doc['kind']}", doc


def test_every_kubernetes_object_validates_against_the_kubernetes_schema():
    import pytest
    from kubernetes_validate import ValidationError, validate

    checked = []
    for name, obj in kubernetes_objects():
        validate(obj, "1.30", strict=True)  # raises with the field that is wrong
        checked.append(name)
    assert len(checked) >= 8
    bad = yaml.safe_load((DEPLOY / "kuberay/nightly-cronjob.yaml").read_text())
    bad["spec"]["backoffLimit"] = 1  # the mistake the first CronJob shipped with
    with pytest.raises(ValidationError):
        validate(bad, "1.30", strict=True)
