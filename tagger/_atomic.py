"""Output files that are either complete or absent, and never an input.

:func:`atomic_output` writes to a hidden temporary file in the target's own folder
(``.NAME.<random>.tmp``: same file system, so the final rename is atomic; hidden, so ``cat out/*``
or a folder reader never takes it for an output) and renames it over the target only when the
writing succeeded. On any failure (an exception, a full disk, Ctrl-C, or SIGTERM, which the
command line turns into Ctrl-C) the temporary is removed, even when closing it fails too.

A target that is a symbolic link stays one: the file it points to is replaced. A target that
exists and is not a regular file is never replaced by one: a character device (``/dev/null``,
``/dev/stdout`` on a terminal) or a FIFO (a named pipe, ``/dev/stdout`` into a pipe) is written
through directly, as the user means it, without a temporary (it cannot be whole or nothing); a
folder, a socket or a block device is refused before anything is written
(:func:`check_output`).

:func:`same_file_as` says whether an output would overwrite an input, through links as well.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TextIO


def temporary_name(target: str | os.PathLike) -> str:
    """A fresh hidden name beside ``target``: ``.NAME.<random>.tmp`` in the target's folder."""
    folder, name = os.path.split(os.path.abspath(os.fspath(target)))
    return os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")


def remove_quietly(path: str | os.PathLike) -> None:
    """Remove ``path`` if it exists (a temporary that may or may not have been created)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _create(target: str) -> tuple[int, str]:
    """A new temporary beside ``target``, opened for writing (O_EXCL: never someone else's)."""
    for _ in range(100):
        tmp = temporary_name(target)
        try:
            # 0o666 under the umask: the permissions a plain open() would give the target.
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {target}")


def check_output(target: str | os.PathLike) -> str:
    """Where writing ``target`` goes, or an error when it cannot be an output file.

    Parameters
    ----------
    target : path
        An output file named by the user.

    Returns
    -------
    str
        The path to write: ``target`` itself, or for a symbolic link the file it points to
        (which need not exist yet, as for a shell's ``>``), so that the link stays a link.

    Raises
    ------
    DataError
        ``target`` exists and is a folder, a socket or a block device (a character device or a
        FIFO is written through: see :func:`atomic_output`).
    OSError
        A loop of symbolic links, or a target that cannot be looked at.
    """
    from .errors import DataError

    target = os.fspath(target)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None  # a new file, or a link to where one will be
    for test, what in ((stat.S_ISDIR, "a folder"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISBLK, "a block device")):
        if mode is not None and test(mode):
            raise DataError(f"the output is {what}, not a file; choose a file", target)
    if os.path.islink(target) and (mode is None or stat.S_ISREG(mode)):
        # Not for a device or a FIFO, which are opened through the link: /dev/stdout leads to
        # /proc/self/fd/1, whose target (pipe:[...]) is no path.
        return os.path.realpath(target)
    return target


def _writes_through(target: str) -> bool:
    """Whether ``target`` is a character device or a FIFO, written to directly."""
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


@contextmanager
def atomic_output(target: str | os.PathLike, encoding: str = "utf-8",
                  newline: str = "\n") -> Iterator[TextIO]:
    """Write a text file atomically: all of it, or nothing and no trace.

    Parameters
    ----------
    target : path
        The file to write; replaced (keeping its permissions) only when the block succeeds.
        For a symbolic link, the file it points to is replaced and the link kept; a character
        device or a FIFO is written through directly (no temporary, so not whole or nothing).
    encoding, newline : str
        As for :func:`open`.

    Yields
    ------
    TextIO
        The temporary file to write to; it is flushed to disk, closed and renamed over
        ``target`` when the block ends without an exception.

    Raises
    ------
    DataError
        ``target`` is a folder, a socket or a block device; before anything is written.
    """
    target = check_output(target)
    if _writes_through(target):
        with open(target, "w", encoding=encoding, newline=newline) as out:
            yield out
        return
    fd, tmp = _create(target)
    try:
        out = open(fd, "w", encoding=encoding, newline=newline)  # noqa: SIM115
    except BaseException:
        os.close(fd)
        remove_quietly(tmp)
        raise
    try:
        yield out
        out.flush()
        os.fsync(out.fileno())
        out.close()
        try:
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        except FileNotFoundError:
            pass  # a new file: the umask's permissions, set at creation
        os.replace(tmp, target)
    except BaseException:
        try:
            # Closing flushes the buffer, which fails again on a full disk; the descriptor is
            # released all the same, and the temporary must go whatever close() does.
            out.close()
        except Exception:
            pass
        finally:
            remove_quietly(tmp)
        raise


def _identity(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return status.st_dev, status.st_ino


def same_file_as(path: str | os.PathLike, candidates: Iterable[str | os.PathLike]) -> str | None:
    """The first of ``candidates`` that is the very file (or folder) ``path`` names, or None.

    Files are compared by device and inode, as :func:`os.path.samefile` does, so that another
    spelling, a symbolic link or a hard link to an input is recognised. A ``path`` that does not
    exist is no existing file; ``"-"`` (standard input) is never a candidate.
    """
    identity = _identity(path)
    if identity is None:
        return None
    for candidate in candidates:
        if os.fspath(candidate) != "-" and _identity(candidate) == identity:
            return os.fspath(candidate)
    return None
