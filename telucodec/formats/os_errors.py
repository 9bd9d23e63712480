"""Which side of the line an OSError falls on: a fault of one file (gone, not a file, its own
permissions), which skips that clip or shard like corrupt data, or a fault of the machine (too many
open files, an I/O error, a full disk, a folder that may not be entered), which stops the run with
one line naming the file. No reader may count the machine's fault as a bad clip: past the open-file
limit every later clip would be "skipped" and the run would go on, silently losing data."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from telucodec.errors import AudioError, StorageError, TelucodecError

# what an OSError says about the one file it names: the file is the problem, not the machine
FILE_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG})
PERMISSION_ERRNOS = frozenset({errno.EACCES, errno.EPERM})


def is_machine_fault(exc: BaseException) -> bool:
    """An OSError the OS raised (it carries an errno) for a reason that is not the file's own."""
    return isinstance(exc, OSError) and exc.errno is not None and exc.errno not in FILE_ERRNOS | PERMISSION_ERRNOS


def _folder_closed(path: str | Path) -> Path | None:
    """The topmost folder above `path` that exists and that this process may not enter, if any."""
    for folder in reversed(Path(os.path.abspath(path)).parents):
        if not os.access(folder, os.X_OK):
            return folder if os.access(folder, os.F_OK) else None
    return None


def read_error(exc: OSError, name: str | Path, file: str | Path | None = None) -> TelucodecError:
    """The project's error for an OSError raised reading `name` (a file, or ARCHIVE:MEMBER whose
    archive is `file`): AudioError when the file itself is at fault (the caller skips it),
    StorageError when the machine is (the caller lets it stop the run)."""
    reason = exc.strerror or str(exc)
    if exc.errno in PERMISSION_ERRNOS:
        closed = _folder_closed(file if file is not None else name)
        if closed is not None:
            return StorageError(f"cannot enter folder {closed}: {name}: permission denied")
        return AudioError(f"{name}: permission denied")
    if exc.errno is None or exc.errno in FILE_ERRNOS:
        return AudioError(f"{name}: cannot read ({reason})")
    return StorageError(f"{name}: {reason} (errno {errno.errorcode.get(exc.errno, exc.errno)}): "
                        "the system failed reading it; the run stops rather than skip it as a bad clip")


def raise_if_machine_fault(exc: BaseException, name: str | Path, file: str | Path | None = None) -> None:
    """Re-raise an OSError of the machine as StorageError naming `name` (else do nothing)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        err = read_error(exc, name, file)
        if isinstance(err, StorageError):
            raise err from exc
