"""Starts the real tollgate-mock and tollgate (on conf/demo.yaml) for the SDK tests."""

import os
import socket
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug"
KEY = "sk-tollgate-sdk-test"


_GIVEN: set[int] = set()


def free_port() -> int:
    """A free port never handed out before in this run (the kernel may offer
    one again as soon as its probe closes, before its server binds it)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def wait_for(port: int) -> None:
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


class Stack:
    def __init__(self, config: str = "conf/demo.yaml", **extra_env: str) -> None:
        mock_port, gw_port, metrics_port, admin_port = free_port(), free_port(), free_port(), free_port()
        self.dir = tempfile.mkdtemp(prefix="tollgate-sdk-")
        self.mock = subprocess.Popen(
            [str(TARGET / "tollgate-mock"), "--listen", f"127.0.0.1:{mock_port}"],
            stdout=subprocess.DEVNULL,
        )
        wait_for(mock_port)
        env = dict(
            os.environ,
            TOLLGATE_LISTEN=f"127.0.0.1:{gw_port}",
            TOLLGATE_METRICS_LISTEN=f"127.0.0.1:{metrics_port}",
            TOLLGATE_MOCK_URL=f"http://127.0.0.1:{mock_port}",
            TOLLGATE_DEMO_KEY=KEY,
            TOLLGATE_ADMIN_LISTEN=f"127.0.0.1:{admin_port}",
            TOLLGATE_DB=os.path.join(self.dir, "tollgate.db"),
            RUST_LOG="warn",
            **extra_env,
        )
        self.gateway = subprocess.Popen(
            [str(TARGET / "tollgate"), "serve", "--config", str(REPO / config)],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        wait_for(gw_port)
        self.url = f"http://127.0.0.1:{gw_port}"
        self.mock_url = f"http://127.0.0.1:{mock_port}"
        self.metrics_url = f"http://127.0.0.1:{metrics_port}"
        self.admin_url = f"http://127.0.0.1:{admin_port}"
        self.key = KEY

    def stop(self) -> None:
        for p in (self.gateway, self.mock):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def stack():
    s = Stack()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def every_kind():
    """The gateway on conf/every-kind.yaml: one model per provider kind."""
    s = Stack("conf/every-kind.yaml")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def pinging():
    """conf/demo.yaml with a keep-alive after 100 ms of provider silence."""
    s = Stack(TOLLGATE_STREAM_PING_MS="100")
    yield s
    s.stop()
