"""Power cuts at any file-system step of the core's storage (outbox, sequence file)."""

import os


class PowerCut(Exception):
    pass


class Faults:
    """Counts file-system steps (open for write, write, fsync, rename, remove) and cuts the
    power at step ``at``: a write lands half-way, nothing after it happens.  With
    ``lose_unsynced`` the cut also drops every byte not yet fsync'd."""

    def __init__(self, at, lose_unsynced=False, fat_rename=False):
        self.at = at
        self.n = 0
        self.lose_unsynced = lose_unsynced
        self.fat_rename = fat_rename
        self.synced = {}                                  # path -> durable size

    def step(self):
        self.n += 1
        if self.n == self.at:
            self.cut()
            raise PowerCut(self.n)

    def cut(self):
        if self.lose_unsynced:
            for path, size in self.synced.items():
                if os.path.exists(path) and os.path.getsize(path) > size:
                    with open(path, "r+b") as f:
                        f.truncate(size)


def install(monkeypatch, faults):
    import builtins

    from gridlink.firmware.core import fsio, outbox

    real_open = builtins.open

    class File:
        def __init__(self, path, mode):
            self.path, self.f = str(path), real_open(path, mode)
            if "w" in mode:
                faults.synced[self.path] = 0
            else:
                faults.synced.setdefault(self.path, os.path.getsize(self.path))

        def write(self, data):
            if faults.n + 1 == faults.at:
                self.f.write(data[: len(data) // 2])
                self.f.flush()
            faults.step()
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fake_open(path, mode="r", *a, **kw):
        if "w" in mode or "a" in mode:
            faults.step()
            return File(path, mode)
        return real_open(path, mode, *a, **kw)

    real_durable, real_rename, real_remove = fsio.durable, os.rename, os.remove

    def durable(f):
        faults.step()
        real_durable(f)
        faults.synced[f.path] = os.path.getsize(f.path)

    def rename(a, b):
        faults.step()
        if faults.fat_rename and os.path.exists(b):
            raise OSError(17, "FAT: target exists")
        real_rename(a, b)
        faults.synced[str(b)] = faults.synced.pop(str(a), os.path.getsize(b))

    def remove(p):
        faults.step()
        real_remove(p)

    monkeypatch.setattr(outbox, "open", fake_open, raising=False)
    monkeypatch.setattr(fsio, "open", fake_open, raising=False)
    monkeypatch.setattr(fsio, "durable", durable)
    monkeypatch.setattr(fsio.os, "rename", rename)
    monkeypatch.setattr(fsio.os, "remove", remove)
