"""Membership and quorum from corosync, by notification: libcpg and libquorum through ctypes.

The agent (agent.py) selects on the two file descriptors and calls dispatch() when one is
readable; the callbacks then run in its thread. Only what the agent needs is bound:

* Quorum: whether this node is quorate and which nodes are in its view, on every change
  (quorum_trackstart with CS_TRACK_CURRENT | CS_TRACK_CHANGES: the current view first).
* CPG: a process group the agents join, so that each learns when the other's agent joins or
  leaves and why (node down or process down), and can send it a message (agreed order).

The C types and constants are corosync 3's (corosync/cpg.h, corosync/quorum.h,
corosync/corotypes.h); docs/agent.md lists them.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable

from ansible_collections.colo.ft.plugins.module_utils.colo.errors import ColoError

CS_OK = 1
CS_ERR_TRY_AGAIN = 6
CS_DISPATCH_ALL = 2
CS_TRACK_CURRENT = 0x01
CS_TRACK_CHANGES = 0x02
CPG_TYPE_AGREED = 2  # cpg_guarantee_t: UNORDERED 0, FIFO 1, AGREED 2, SAFE 3
CPG_MAX_NAME_LENGTH = 128
# Why a member left a CPG group (cpg.h, enum cpg_reason_t).
CPG_REASONS = {1: "join", 2: "leave", 3: "nodedown", 4: "nodeup", 5: "procdown"}


class CorosyncError(ColoError):
    """A corosync library call failed (corosync not running, or not reachable)."""


class CpgName(ctypes.Structure):
    _fields_ = [("length", ctypes.c_uint32), ("value", ctypes.c_char * CPG_MAX_NAME_LENGTH)]


class CpgAddress(ctypes.Structure):
    _fields_ = [("nodeid", ctypes.c_uint32), ("pid", ctypes.c_uint32), ("reason", ctypes.c_uint32)]


class IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


_DELIVER = ctypes.CFUNCTYPE(None, ctypes.c_uint64, ctypes.POINTER(CpgName), ctypes.c_uint32, ctypes.c_uint32,
                            ctypes.c_void_p, ctypes.c_size_t)
_CONFCHG = ctypes.CFUNCTYPE(None, ctypes.c_uint64, ctypes.POINTER(CpgName),
                            ctypes.POINTER(CpgAddress), ctypes.c_size_t, ctypes.POINTER(CpgAddress), ctypes.c_size_t,
                            ctypes.POINTER(CpgAddress), ctypes.c_size_t)
_QUORUM_NOTIFY = ctypes.CFUNCTYPE(None, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_uint32,
                                  ctypes.POINTER(ctypes.c_uint32))


class CpgCallbacks(ctypes.Structure):
    _fields_ = [("deliver", _DELIVER), ("confchg", _CONFCHG)]


class QuorumCallbacks(ctypes.Structure):
    _fields_ = [("notify", _QUORUM_NOTIFY)]


def _library(name: str, soname: str) -> ctypes.CDLL:
    try:
        return ctypes.CDLL(ctypes.util.find_library(name) or soname)
    except OSError as exc:
        raise CorosyncError(f"cannot load {soname} ({exc}); install corosync (the colo_cluster role does)") from None


def _check(what: str, rc: int) -> None:
    if rc != CS_OK:
        raise CorosyncError(f"{what} failed with corosync error {rc} (is corosync running?)")


def _fd(lib: ctypes.CDLL, getter: str, handle: ctypes.c_uint64) -> int:
    fd = ctypes.c_int()
    _check(getter, getattr(lib, getter)(handle, ctypes.byref(fd)))
    return fd.value


def _members(entries: ctypes.Array | ctypes._Pointer, count: int) -> list[tuple[int, int, str]]:
    return [(entries[i].nodeid, entries[i].pid, CPG_REASONS.get(entries[i].reason, str(entries[i].reason)))
            for i in range(count)]


class Quorum:
    """This node's quorum: on_change(quorate, node ids in the view) on each change, the current one first."""

    def __init__(self, on_change: Callable[[bool, list[int]], None]):
        self._lib = _library("quorum", "libquorum.so.5")
        self._handle = ctypes.c_uint64()
        self._on_change = on_change
        # Kept on self: the C library calls it long after __init__ returns.
        self._callbacks = QuorumCallbacks(_QUORUM_NOTIFY(self._notify))
        kind = ctypes.c_uint32()
        _check("quorum_initialize", self._lib.quorum_initialize(ctypes.byref(self._handle),
                                                                ctypes.byref(self._callbacks), ctypes.byref(kind)))
        _check("quorum_trackstart", self._lib.quorum_trackstart(self._handle, CS_TRACK_CURRENT | CS_TRACK_CHANGES))
        self.fd = _fd(self._lib, "quorum_fd_get", self._handle)

    def _notify(self, _handle: int, quorate: int, _ring: int, count: int, nodes: ctypes._Pointer) -> None:
        self._on_change(bool(quorate), [nodes[i] for i in range(count)])

    def dispatch(self) -> None:
        _check("quorum_dispatch", self._lib.quorum_dispatch(self._handle, CS_DISPATCH_ALL))

    def close(self) -> None:
        self._lib.quorum_finalize(self._handle)


class Cpg:
    """Membership in one CPG group and messages to it.

    on_members(members, left, joined): lists of (nodeid, pid, reason); on_message(nodeid, data).
    """

    def __init__(self, group: str, on_members: Callable[[list, list, list], None],
                 on_message: Callable[[int, bytes], None]):
        self._lib = _library("cpg", "libcpg.so.4")
        self._handle = ctypes.c_uint64()
        self._on_members = on_members
        self._on_message = on_message
        self._callbacks = CpgCallbacks(_DELIVER(self._deliver), _CONFCHG(self._confchg))
        raw = group.encode()
        if len(raw) > CPG_MAX_NAME_LENGTH:
            raise CorosyncError(f"CPG group name {group!r} is longer than {CPG_MAX_NAME_LENGTH} bytes")
        self._name = CpgName(len(raw), raw)
        _check("cpg_initialize", self._lib.cpg_initialize(ctypes.byref(self._handle), ctypes.byref(self._callbacks)))
        _check("cpg_join", self._lib.cpg_join(self._handle, ctypes.byref(self._name)))
        self.fd = _fd(self._lib, "cpg_fd_get", self._handle)
        nodeid = ctypes.c_uint()
        _check("cpg_local_get", self._lib.cpg_local_get(self._handle, ctypes.byref(nodeid)))
        self.nodeid = nodeid.value

    def _deliver(self, _handle: int, _group: ctypes._Pointer, nodeid: int, _pid: int, msg: int, size: int) -> None:
        self._on_message(nodeid, ctypes.string_at(msg, size))

    def _confchg(self, _handle: int, _group: ctypes._Pointer, members: ctypes._Pointer, n_members: int,
                 left: ctypes._Pointer, n_left: int, joined: ctypes._Pointer, n_joined: int) -> None:
        self._on_members(_members(members, n_members), _members(left, n_left), _members(joined, n_joined))

    def dispatch(self) -> None:
        _check("cpg_dispatch", self._lib.cpg_dispatch(self._handle, CS_DISPATCH_ALL))

    def send(self, data: bytes) -> None:
        """Send data to every member (this one too), in agreed order; retries for about a second while corosync is busy."""
        buf = ctypes.create_string_buffer(data, len(data))
        iov = IoVec(ctypes.cast(buf, ctypes.c_void_p), len(data))
        for _attempt in range(100):
            rc = self._lib.cpg_mcast_joined(self._handle, CPG_TYPE_AGREED, ctypes.byref(iov), 1)
            if rc != CS_ERR_TRY_AGAIN:
                _check("cpg_mcast_joined", rc)
                return
            time.sleep(0.01)
        raise CorosyncError("cpg_mcast_joined: corosync stayed busy (try again) 100 times")

    def close(self) -> None:
        self._lib.cpg_finalize(self._handle)
