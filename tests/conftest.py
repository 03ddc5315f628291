"""Suite-wide settings that keep the tests independent of the machine's speed and load.

* Every process a test starts (``python -m repro ...``, torchrun workers) inherits
  ``OMP_NUM_THREADS=1`` / ``MKL_NUM_THREADS=1``: a child that takes every core fights the pytest
  process (and anything else running) for them, which slowed a training run ~7x on a busy 2-core
  machine. The pytest process itself keeps the thread count it started with.
* No test may reach the network: a download that hangs or fails slowly is a speed assumption in
  disguise (e.g. "LPIPS without weights is left out quickly"). Any connection to a host other than
  this machine is refused and fails the test that tried it, whether or not the code caught the error.
"""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest
import torch

CHILD_THREADS = "1"
_HOSTNAME = socket.gethostname()

# torch (and its OpenMP runtime) is loaded above, before the environment changes below: this
# process keeps its threads, and the explicit call pins that even if the pool starts lazily.
torch.set_num_threads(torch.get_num_threads())
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = CHILD_THREADS


def bounded_env(**extra: str) -> dict[str, str]:
    """The environment for a child process of a test: one thread per library, unbuffered output."""
    return {**os.environ, "OMP_NUM_THREADS": CHILD_THREADS, "MKL_NUM_THREADS": CHILD_THREADS,
            "OPENBLAS_NUM_THREADS": CHILD_THREADS, "PYTHONUNBUFFERED": "1", **extra}


def _is_local(address) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths and the like
        return True
    host = address[0]
    if host in ("localhost", "", _HOSTNAME):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:  # a host name other than localhost: that is the network
        return False


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Refuse (and report) any connection that would leave this machine."""
    attempts: list[str] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guard(real):
        def connect(self, address):
            if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address):
                attempts.append(repr(address))
                raise OSError(f"tests/conftest.py: network access refused ({address!r})")
            return real(self, address)
        return connect

    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):  # a name lookup is already the network (and may hang)
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and not _is_local((name,)):
            attempts.append(f"lookup of {name!r}")
            raise socket.gaierror(f"tests/conftest.py: network access refused (lookup of {name!r})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guard(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guard(real_connect_ex))
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield
    assert not attempts, f"the test tried to reach the network (a download?): {attempts}"
