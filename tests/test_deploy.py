"""The container and cluster recipe: the Kubernetes manifests are valid against the
Kubernetes schema and agree with the engine (probe paths it answers, a grace period above
its drain, a preStop that starts the drain, a metric it exports), and the Dockerfile's
command and health check work together against a real `callengine serve`. (The drain
sequence itself runs in tests/test_shutdown.py.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from callengine.server import PLAIN_PATHS

from .serve_process import start_serve

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "deploy" / "kubernetes" / "callengine.yaml"
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _docs() -> list[dict]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def _container() -> dict:
    (deployment,) = [d for d in _docs() if d["kind"] == "Deployment"]
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_the_manifests_are_valid_kubernetes():
    docs = _docs()
    assert {d["kind"] for d in docs} == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    for doc in docs:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)


def test_the_manifests_agree_with_the_engine():
    (deployment,) = [d for d in _docs() if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = _container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" in PLAIN_PATHS
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" in PLAIN_PATHS
    args = container["args"]
    drain = float(args[args.index("--drain-grace") + 1])
    # drain grace + cleanup grace (2) + close timeout (2): the kubelet must not kill mid-drain
    assert pod["terminationGracePeriodSeconds"] > drain + 2 + 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["python", "-c"] and "os.kill(1, signal.SIGUSR1)" in command[2]
    (hpa,) = [d for d in _docs() if d["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "callengine_calls_active"


def test_the_hpa_metric_is_exported():
    from callengine.metrics import ServerMetrics
    from callengine.server import CallServer

    async def agent(call):
        pass

    text = ServerMetrics(CallServer(agent)).render().decode()
    assert re.search(r"^# TYPE callengine_calls_active gauge$", text, re.M)


def _dockerfile_json(instruction: str) -> list[str]:
    match = re.search(rf"^{instruction}\s+(\[.*\])\s*$", DOCKERFILE, re.M)
    assert match, instruction
    return json.loads(match.group(1))


def test_the_dockerfile_runs_as_a_user_and_the_cli_is_pid_1():
    user = re.search(r"^USER\s+(\S+)\s*$", DOCKERFILE, re.M)
    assert user and user.group(1) not in ("root", "0")
    assert _dockerfile_json("ENTRYPOINT") == ["callengine"]  # exec form: signals reach it


async def test_the_image_command_and_health_check_work_together(nursery):
    """The image's CMD (port aside) served here, and its HEALTHCHECK command run against
    it: exit 0; against a port where nothing listens: non-zero."""
    cmd = _dockerfile_json("CMD")
    assert cmd[0] == "serve"
    args = cmd[1:]
    args[args.index("--port") + 1] = "0"
    args[args.index("--host") + 1] = "127.0.0.1"
    server = await start_serve(nursery, args)
    check = re.search(r'HEALTHCHECK[^\n]*\\\n\s*CMD\s+(\[.*\])', DOCKERFILE)
    assert check
    probe = json.loads(check.group(1))
    assert probe[0] == "python"
    run = [sys.executable, *probe[1:]]
    ok = subprocess.run([a.replace(":8080/", f":{server.port}/") for a in run], capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    closed = subprocess.run([a.replace(":8080/", ":9/") for a in run], capture_output=True, timeout=30)
    assert closed.returncode != 0
    server.proc.terminate()
    assert await server.wait() == 0


def test_the_readme_names_the_recipe():
    readme = (ROOT / "README.md").read_text()
    assert "deploy/kubernetes/callengine.yaml" in readme and "Dockerfile" in readme
