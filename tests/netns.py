"""Other hosts on this machine, for tests: Linux network namespaces, each with its own
loopback and ports, joined to this one by a bridge (iproute2's `ip`; root only). A process
started in one reaches this host only at its bridge address, as a worker on another machine
reaches a head node; nothing outside the machine is joined to the bridge."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

PREFIX = "mnt"
"""Names: `mnt<pid>b` the bridge, `mnt<pid>v<i>` a host's cable, `mnt<pid>h<i>` a host."""


def missing() -> str | None:
    """What this machine lacks to make hosts, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip"):
        return "network namespaces need iproute2's `ip` (make netns)"
    return None


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class Hosts:
    head: str
    """This host's address on the bridge: where the hosts reach it."""
    addresses: dict[str, str]
    """Each host (namespace) by name: its address."""

    def on(self, host: str, args: list[str]) -> list[str]:
        """The command `args` run on `host`."""
        return ["ip", "netns", "exec", host, *args]


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def _remove_stale() -> None:
    """Remove the hosts and bridges of test processes that died without removing them."""
    for name, pid in re.findall(rf"^({PREFIX}(\d+)h\d+)", _ip("netns", "list"), re.M):
        if not _alive(int(pid)):
            _ip("netns", "delete", name)
    for name, pid in re.findall(rf"\d+: ({PREFIX}(\d+)b)[:@]", _ip("-o", "link", "show"), re.M):
        if not _alive(int(pid)):
            _ip("link", "delete", name)


@contextmanager
def hosts(count: int) -> Iterator[Hosts]:
    """`count` hosts on a /24 of their own (10.213.N.0, the first N from this process id not
    on this machine yet), this one at .1 and the hosts from .2; each host's default route
    leads here. All removed after."""
    _remove_stale()
    pid, taken = os.getpid(), _ip("-o", "addr", "show")
    net = next(
        net for n in range(250) if (net := f"10.213.{(pid + n) % 250 + 1}") + "." not in taken
    )
    bridge = f"{PREFIX}{pid}b"
    made: list[str] = []
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{net}.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        addresses = {}
        for i in range(count):
            host, cable = f"{PREFIX}{pid}h{i}", f"{PREFIX}{pid}v{i}"
            _ip("netns", "add", host)
            made.append(host)
            _ip("link", "add", cable, "type", "veth", "peer", "name", "eth0", "netns", host)
            _ip("link", "set", cable, "master", bridge, "up")
            _ip("-n", host, "addr", "add", f"{net}.{i + 2}/24", "dev", "eth0")
            _ip("-n", host, "link", "set", "eth0", "up")
            _ip("-n", host, "link", "set", "lo", "up")
            _ip("-n", host, "route", "add", "default", "via", f"{net}.1")
            addresses[host] = f"{net}.{i + 2}"
        yield Hosts(f"{net}.1", addresses)
    finally:
        for host in made:  # takes its end of the cable, and so the cable, with it
            subprocess.run(["ip", "netns", "delete", host], capture_output=True)
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True)
