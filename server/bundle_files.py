"""Write per-device credential folders; runs in a writer process of ``matter dac issue``.

Standard library only, so the spawned writer process starts in a fraction of a
second: it imports this module and nothing of privca's crypto or storage. Each
device gets ``OUT/NAME/`` holding dac.der, dac.pem, key.pem (0600, when the key
was generated here) and pai.pem (a hard link to ``OUT/pai.pem``). Files are
created exclusively: an existing name is an error, never overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["Device", "create_file", "write_devices"]

# (folder name, DAC DER, DAC PEM, private key PEM or None)
Device = tuple[str, bytes, bytes, bytes | None]


def create_file(
    path: str | os.PathLike[str], data: bytes, mode: int, *, dir_fd: int | None = None
) -> None:
    """Create a new file (never overwrite one) holding ``data``; relative to ``dir_fd`` if given."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode, dir_fd=dir_fd)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def write_devices(out: str, devices: Sequence[Device]) -> int:
    """Create one folder per device under ``out`` (which holds pai.pem); return how many."""
    pai = os.path.join(out, "pai.pem")
    for name, der, pem, key in devices:
        folder = os.path.join(out, name)
        os.mkdir(folder)
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            create_file("dac.der", der, 0o644, dir_fd=dir_fd)
            create_file("dac.pem", pem, 0o644, dir_fd=dir_fd)
            if key is not None:
                create_file("key.pem", key, 0o600, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        # Every device gets the same PAI: a hard link saves a data write.
        os.link(pai, os.path.join(folder, "pai.pem"))
    return len(devices)
