"""The listening socket, read from the kernel: the backlog a burst of connections waits in."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from pathlib import Path

from dummy_vllm.settings import DEFAULT_BACKLOG

from .conftest import LiveServer

# linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_DONE = 3
NLMSG_ERROR = 2
TCP_LISTEN = 10
NLMSG_HEADER = struct.Struct("=IHHII")
# inet_diag_req_v2: family, protocol, ext, pad, states, then a zeroed inet_diag_sockid.
DIAG_REQUEST = struct.Struct("=BBBBI48x")
# inet_diag_msg: family, state, timer, retrans, sockid (sport, dport big-endian, ...),
# expires, rqueue, wqueue, uid, inode.
DIAG_MESSAGE = struct.Struct("=BBBB2H32x4x8xIIIII")


def listen_backlogs() -> dict[int, int]:
    """Port -> maximum accept queue (``sk_max_ack_backlog``, what ``ss -l`` shows as Send-Q)
    of every IPv4 TCP socket listening on this machine, from the kernel's sock_diag."""
    request = DIAG_REQUEST.pack(socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 1 << TCP_LISTEN)
    header = NLMSG_HEADER.pack(
        NLMSG_HEADER.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0
    )
    backlogs: dict[int, int] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as sock:
        sock.send(header + request)
        while True:
            data = sock.recv(65536)
            offset = 0
            while offset < len(data):
                length, kind, _, _, _ = NLMSG_HEADER.unpack_from(data, offset)
                if kind == NLMSG_DONE:
                    return backlogs
                assert kind != NLMSG_ERROR, "sock_diag refused the request"
                fields = DIAG_MESSAGE.unpack_from(data, offset + NLMSG_HEADER.size)
                port = socket.ntohs(fields[4])
                backlogs[port] = fields[8]  # for a listener, wqueue is its maximum backlog
                offset += (length + 3) & ~3


def kernel_cap(backlog: int) -> int:
    return min(backlog, int(Path("/proc/sys/net/core/somaxconn").read_text()))


def test_default_backlog_is_uvicorns(live_server: LiveServer) -> None:
    assert DEFAULT_BACKLOG == 2048
    assert listen_backlogs()[live_server.port] == kernel_cap(DEFAULT_BACKLOG)


def test_backlog_is_configurable(start_server: Callable[..., LiveServer]) -> None:
    server = start_server("--backlog", "777")
    assert listen_backlogs()[server.port] == kernel_cap(777)
    env_server = start_server(env={"DUMMY_VLLM_BACKLOG": "333"})
    assert listen_backlogs()[env_server.port] == kernel_cap(333)
