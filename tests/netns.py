"""Network namespaces joined to this one by veth pairs, for the partition tests.

Each :class:`Namespace` is a fresh network namespace with one or more links:
a veth pair whose host end (``10.213.B.1/30``) stays in the namespace the
test runs in, and whose other end (``10.213.B.2/30``) sits in the namespace.
A process started with :meth:`Namespace.popen` runs inside it (``ip netns
exec``, which execs the command: the Popen's pid is the process itself, so
signals reach it directly) and reaches this namespace's processes through the
host end's address, over real TCP.

A partition is :meth:`Link.cut`: the namespace's end of the link goes down.
The namespace then has no route to the host end (its own sends fail locally,
nothing leaves), and the host end loses its carrier, so what this side sends
that way is dropped at the veth: no RST, no FIN, no ICMP reaches either side,
exactly a pulled cable. :meth:`Link.mend` brings it back up with its address
and route. (netem is not in this kernel, and neither nftables nor iptables
is installed here; link state needs neither.)

Only addresses in 10.213.0.0/16 are used, in /30 blocks no interface of this
namespace has yet. Everything is removed on exit, even when the test fails:
deleting a namespace deletes its veth ends, and with them the host ends.

Root only (creating namespaces needs CAP_SYS_ADMIN and CAP_NET_ADMIN):
:func:`unavailable` says why not, for a clear skip outside CI.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

SUBNET = ipaddress.ip_network("10.213.0.0/16")


def _ip(*args: str, namespace: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["ip", *(["-n", namespace] if namespace else []), *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return result


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CI runs as root)"
    return None


def _blocks_in_use() -> set[ipaddress.IPv4Network]:
    """The /30 blocks of 10.213.0.0/16 that an interface here already has an address in."""
    used = set()
    for line in _ip("-o", "-4", "addr", "show").stdout.splitlines():
        address = ipaddress.ip_interface(line.split()[3])
        if address.ip in SUBNET:
            used.add(ipaddress.ip_network(f"{address.ip}/30", strict=False))
    return used


def _free_blocks(count: int) -> list[ipaddress.IPv4Network]:
    used = _blocks_in_use()
    # Start somewhere that depends on the process, so two test sessions rarely race for a block.
    blocks = list(SUBNET.subnets(new_prefix=30))
    start = (os.getpid() * 61) % len(blocks)
    free = [b for b in blocks[start:] + blocks[:start] if b not in used]
    return free[:count]


@dataclass
class Link:
    """One veth pair: ``host_end`` here, ``ns_end`` in the namespace."""

    namespace: str
    host_if: str
    ns_if: str
    block: ipaddress.IPv4Network

    @property
    def host_address(self) -> str:
        return str(self.block[1])

    @property
    def ns_address(self) -> str:
        return str(self.block[2])

    def cut(self) -> None:
        """Partition: the namespace's end goes down; nothing passes either way."""
        _ip("link", "set", self.ns_if, "down", namespace=self.namespace)

    def mend(self) -> None:
        """Heal the partition: the namespace's end up again (its address and route come back with it)."""
        _ip("link", "set", self.ns_if, "up", namespace=self.namespace)

    def is_up(self) -> bool:
        state = _ip("-br", "link", "show", self.ns_if, namespace=self.namespace).stdout.split()
        return len(state) > 1 and state[1] in ("UP", "LOWERLAYERDOWN", "UNKNOWN")


@dataclass
class Namespace:
    """A network namespace and its links to this one."""

    name: str
    links: list[Link] = field(default_factory=list)

    @property
    def link(self) -> Link:
        return self.links[0]

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def popen(self, command: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start ``command`` inside this namespace (the pid is the command's own)."""
        return subprocess.Popen([*self.exec_prefix(), *command], **kwargs)  # type: ignore[call-overload]

    def run(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.exec_prefix(), *command], capture_output=True, text=True)


def _add_link(namespace: Namespace, tag: str, index: int, block: ipaddress.IPv4Network) -> Link:
    # Interface names have at most 15 characters.
    link = Link(namespace.name, f"sh{tag}{index}", f"sn{tag}{index}", block)
    _ip("link", "add", link.host_if, "type", "veth", "peer", "name", link.ns_if, "netns", namespace.name)
    _ip("addr", "add", f"{link.host_address}/30", "dev", link.host_if)
    _ip("link", "set", link.host_if, "up")
    _ip("addr", "add", f"{link.ns_address}/30", "dev", link.ns_if, namespace=namespace.name)
    _ip("link", "set", link.ns_if, "up", namespace=namespace.name)
    namespace.links.append(link)
    return link


def _remove(namespace: Namespace) -> None:
    # Deleting the namespace deletes the veth ends inside it, and so their peers here; the
    # explicit deletes cover a namespace whose links were half made.
    for link in namespace.links:
        _ip("link", "del", link.host_if, check=False)
    _ip("netns", "del", namespace.name, check=False)


@contextlib.contextmanager
def namespaces(links_each: list[int]) -> Iterator[list[Namespace]]:
    """Namespaces with ``links_each[i]`` links each, removed on exit whatever happens."""
    blocks = _free_blocks(sum(links_each))
    if len(blocks) < sum(links_each):
        raise RuntimeError("no free /30 blocks left in 10.213.0.0/16")
    tag = uuid.uuid4().hex[:6]
    made: list[Namespace] = []
    try:
        for number, count in enumerate(links_each):
            namespace = Namespace(f"sentiment-{tag}-{number}")
            _ip("netns", "add", namespace.name)
            made.append(namespace)
            _ip("link", "set", "lo", "up", namespace=namespace.name)
            for index in range(count):
                _add_link(namespace, f"{tag}{number}", index, blocks.pop(0))
        yield made
    finally:
        for namespace in made:
            _remove(namespace)


def leftovers(tag_prefix: str = "sentiment-") -> list[str]:
    """Namespaces with our prefix that still exist (the tests check they left none behind)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in listed.splitlines() if line.startswith(tag_prefix)]
