"""Watching a container from the host without running anything in it: its filesystem changes
(the overlay upper directory when local), its processes, its writable tmpfs mounts.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from pytest_programbench.engine.client import EngineBase, reaching


class Observing(EngineBase):
    """What a container did, seen from outside it."""

    @reaching
    def changes(self, container_id: str) -> list[tuple[str, str]]:
        """The container's filesystem changes against its image: (``A``/``C``/``D``, path) pairs.

        On a local overlay2 engine they are read from the container's upper directory, which
        holds exactly what changed (directories only as parents of changes): the engine's own
        diff walks the whole image for that, ten times slower on the self-test task. Elsewhere
        (a remote engine, another storage driver, no access), the engine's diff.
        """
        local = self._overlay_dirs(container_id)
        if local is not None:
            return _overlay_changes(*local)
        kinds = {0: "C", 1: "A", 2: "D"}
        return [(kinds.get(c["Kind"], "?"), c["Path"]) for c in self.client.api.diff(container_id) or []]

    @reaching
    def written_files(self, container_id: str, roots: tuple[str, ...]) -> list[tuple[str, str]] | None:
        """Regular files under ``roots`` the container added or changed: (path in it, path here).

        Read from the container's overlay upper directory, which holds a whole copy of every
        file the container wrote, so the host path reads what the container would. None
        where that directory is not readable from here (then ask :meth:`archive`).
        """
        local = self._overlay_dirs(container_id)
        return None if local is None else _upper_files(local[0], roots)

    def _overlay_dirs(self, container_id: str) -> tuple[str, list[str]] | None:
        if not self.host.startswith("unix://"):
            return None
        driver = self.client.api.inspect_container(container_id).get("GraphDriver") or {}
        data = driver.get("Data") or {}
        upper, lower = data.get("UpperDir", ""), data.get("LowerDir", "")
        if driver.get("Name") != "overlay2" or not upper or not os.access(upper, os.R_OK | os.X_OK):
            return None
        return upper, [d for d in lower.split(":") if d]

    @reaching
    def local_processes(self, container_id: str) -> tuple[str, int] | None:
        """Where this host sees the container's processes: (its cgroup's procs file, its init's pid).

        Only for a local engine whose processes share our pid namespace (the pids in the
        procs file are then ours: ``/proc/<pid>/exe`` opens each one's executable, memfd
        included). None elsewhere: a remote engine, another pid namespace, no access.
        """
        if not self.host.startswith("unix://"):
            return None
        pid = int((self.client.api.inspect_container(container_id).get("State") or {}).get("Pid") or 0)
        if pid <= 0:
            return None
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except OSError:
            return None
        for procs in cgroup_procs_files(lines):
            try:
                if str(pid) in Path(procs).read_text().split():
                    return procs, pid
            except OSError:
                continue
        return None

    def tmpfs_files(self, container_id: str, pid: int) -> list[tuple[str, str]]:
        """Regular files on the container's writable tmpfs mounts (``/dev/shm``, ``/dev``, ...).

        They are in no layer, and the engine's archive API does not see a private /dev/shm,
        so they are read through ``/proc/<pid>/root`` of the container's init: a local
        engine only (``pid`` from :meth:`local_processes`). (path in it, path here) pairs.
        """
        root = f"/proc/{pid}/root"
        try:
            mounts = writable_tmpfs(Path(f"/proc/{pid}/mountinfo").read_text())
        except OSError:
            return []
        found = []
        for mount in mounts:
            top = root + mount
            try:
                device = os.lstat(top).st_dev
            except OSError:
                continue
            for folder, dirs, names in os.walk(top):
                # Another filesystem mounted below (/dev/mqueue, /dev/pts) is not this mount's.
                dirs[:] = [d for d in dirs if _same_device(os.path.join(folder, d), device)]
                for name in names:
                    full = os.path.join(folder, name)
                    with contextlib.suppress(OSError):
                        info = os.lstat(full)
                        if stat.S_ISREG(info.st_mode) and info.st_dev == device:
                            found.append((full[len(root) :], full))
        return found

    @reaching
    def processes(self, container_id: str) -> list[str]:
        """Command lines of the processes running in the container (``docker top``)."""
        top = self.client.api.top(container_id)
        titles = top.get("Titles") or []
        rows = top.get("Processes") or []
        if len(titles) == 1 and "CMD" in titles[0].split():
            # Podman 4.x answers each process as one unsplit ps line under one title line; ps starts
            # the last column, the command, where its title starts.
            at = titles[0].index("CMD")
            return [str(row[0])[at:].strip() for row in rows if row]
        column = titles.index("CMD") if "CMD" in titles else len(titles) - 1
        return [str(row[column]) for row in rows]


def _overlay_changes(upper: str, lowers: list[str]) -> list[tuple[str, str]]:
    """Changed files of an overlay upper directory, as ``docker diff`` names them.

    A character device 0:0 is overlayfs's mark of a deleted path; any other entry was
    added (no lower layer has it) or changed. Directories are left out: the ones here are
    parents of changes, or empty directories, which change nothing a program reads.
    """
    found = []
    for root, dirs, names in os.walk(upper):
        for name in names + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            full = os.path.join(root, name)
            path = "/" + os.path.relpath(full, upper)
            info = os.lstat(full)
            if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
                found.append(("D", path))
            else:
                existed = any(os.path.lexists(lower + path) for lower in lowers)
                found.append(("C" if existed else "A", path))
    return found


def _same_device(path: str, device: int) -> bool:
    try:
        return os.lstat(path).st_dev == device
    except OSError:
        return False


def writable_tmpfs(mountinfo: str) -> list[str]:
    """Mount points of the read-write tmpfs mounts a ``/proc/<pid>/mountinfo`` lists."""
    found = []
    for line in mountinfo.splitlines():
        fields, _, tail = line.partition(" - ")
        parts, fs = fields.split(), tail.split()
        if len(parts) < 6 or not fs or fs[0] != "tmpfs":
            continue
        options = set(parts[5].split(",")) | set((fs[2] if len(fs) > 2 else "").split(","))
        if "rw" in options and "ro" not in options:
            found.append(parts[4].encode().decode("unicode_escape"))  # mountinfo escapes spaces as \040
    return found


def cgroup_procs_files(lines: list[str]) -> list[str]:
    """The ``cgroup.procs`` files a process's ``/proc/<pid>/cgroup`` lines point to, likeliest first.

    cgroup v2 (``0::/path``) has one hierarchy at /sys/fs/cgroup; v1 one per controller
    set (``4:pids:/docker/<id>`` at /sys/fs/cgroup/pids), of which the pids one is asked first.
    """
    found = []
    for line in lines:
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if not path.startswith("/"):
            continue
        if number == "0" and controllers == "":
            found.append((0, f"/sys/fs/cgroup{path.rstrip('/')}/cgroup.procs"))
        elif controllers and not controllers.startswith("name="):
            rank = 1 if "pids" in controllers.split(",") else 2
            found.append((rank, f"/sys/fs/cgroup/{controllers}{path.rstrip('/')}/cgroup.procs"))
    return [f for _, f in sorted(found, key=lambda rf: rf[0])]


def _upper_files(upper: str, roots: tuple[str, ...]) -> list[tuple[str, str]]:
    """Regular files under each root of an overlay upper directory (whiteouts are devices, left out)."""
    found = []
    for root in roots:
        for folder, _, names in os.walk(upper + root):  # symlinks to directories are not followed
            for name in names:
                full = os.path.join(folder, name)
                if stat.S_ISREG(os.lstat(full).st_mode):
                    found.append(("/" + os.path.relpath(full, upper), full))
    return found
