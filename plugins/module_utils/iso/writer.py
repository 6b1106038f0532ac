# -*- coding: utf-8 -*-
# Copyright (c) vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Writing an image: run xorriso into a pipe and stream its bytes into a file, comparing with
the image already there as they arrive.

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from ansible_collections.vmhost.virt.plugins.module_utils import _tools
from ansible_collections.vmhost.virt.plugins.module_utils.iso.grub import build_grub_images
from ansible_collections.vmhost.virt.plugins.module_utils.iso.names import IsoError
from ansible_collections.vmhost.virt.plugins.module_utils.iso.stamp import ImageStart, stamp_dates
from ansible_collections.vmhost.virt.plugins.module_utils.iso.tools import default_run, tool_env
from ansible_collections.vmhost.virt.plugins.module_utils.iso.xorriso import xorriso_command


def write_staging(plan, workdir):
    """Write generated files (content entries) into workdir; return {iso path: file}."""
    out = {}
    for n, entry in enumerate(sorted(plan.generated, key=lambda e: e.path)):
        fn = os.path.join(workdir, "content-%05d" % n)
        with open(fn, "wb") as f:
            f.write(entry.data)
        os.chmod(fn, entry.mode & 0o777)
        out[entry.iso_path] = fn
    return out


class ImageSink(object):
    """Receives the image as a byte stream.

    It hashes the stream (sha256) and compares it with the image already at
    ``existing``. ``new_path`` is only created once the stream differs: the
    equal prefix is copied from the existing image, the rest comes from the
    stream. So an unchanged image costs no write at all, and with
    ``new_path=None`` (check mode) nothing is ever written.
    """

    def __init__(self, existing=None, new_path=None):
        self.hash = hashlib.sha256()
        self.size = 0
        self.new_path = new_path
        self.existing = open(existing, "rb") if existing and os.path.isfile(existing) else None
        self.same = self.existing is not None
        self.out = None
        if self.existing is None and new_path:
            self.out = open(new_path, "wb")

    def write(self, chunk):
        self.hash.update(chunk)
        if self.same:
            if self.existing.read(len(chunk)) == chunk:
                self.size += len(chunk)
                return
            self._diverge()
        if self.out is not None:
            self.out.write(chunk)
        self.size += len(chunk)

    def _diverge(self):
        self.same = False
        if self.new_path is None:
            return
        self.out = open(self.new_path, "wb")
        left, offset = self.size, 0
        src, dst = self.existing.fileno(), self.out.fileno()
        while left > 0:
            try:
                n = os.copy_file_range(src, dst, left, offset, offset)
            except (AttributeError, OSError):
                self.existing.seek(offset)
                block = self.existing.read(min(left, 1 << 20))
                n = len(block)
                self.out.write(block)
            if n <= 0:
                raise IsoError("could not copy the unchanged start of the existing image")
            left -= n
            offset += n
        self.out.seek(self.size)

    def close(self):
        """Finish; True when the stream equals the existing image byte for byte."""
        if self.same and self.existing.read(1) != b"":
            self._diverge()
        if self.existing is not None:
            self.existing.close()
        if self.out is not None:
            self.out.close()
        return self.same

    def discard(self):
        for f in (self.existing, self.out):
            if f is not None:
                f.close()
        if self.out is not None and self.new_path and os.path.exists(self.new_path):
            os.unlink(self.new_path)

    @property
    def sha256(self):
        return self.hash.hexdigest()


def stream(argv, fifo, sink, env, popen=_tools.spawn, stderr_path=None, epoch=None):
    """Run argv (which writes the image to the named pipe ``fifo``) and feed the bytes to sink;
    return argv's exit status.  With ``epoch``, every node date of the image is set to it
    (:func:`.stamp.stamp_dates`) before its start reaches sink."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        try:
            import fcntl
            fcntl.fcntl(fd, 1031, 1 << 20)  # F_SETPIPE_SZ: fewer wake-ups
        except (ImportError, OSError):
            pass
        errf = open(stderr_path or os.devnull, "wb")
        try:
            proc = popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf)
        except OSError as exc:
            errf.close()
            raise IsoError("cannot run %s: %s" % (argv[0], exc))
        try:
            chunks = _pipe_chunks(fd, proc)
            if epoch is not None:
                start = ImageStart(lambda: next(chunks, b""))
                try:
                    stamp_dates(start, epoch)
                except IsoError:
                    for _chunk in chunks:   # let the writer end: its own failure says more
                        pass
                    if proc.returncode:
                        return proc.returncode
                    raise
                sink.write(bytes(start.data))
            for data in chunks:
                sink.write(data)
        finally:
            errf.close()
        return proc.returncode
    finally:
        os.close(fd)


def _pipe_chunks(fd, proc):
    """The bytes arriving in the pipe ``fd``, until its writer ``proc`` has ended."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    while True:
        poller.poll(200)
        try:
            data = os.read(fd, 1 << 20)
        except BlockingIOError:
            continue
        if data:
            yield data
            continue
        if proc.poll() is not None:
            while True:  # whatever is still buffered
                try:
                    data = os.read(fd, 1 << 20)
                except BlockingIOError:
                    return
                if not data:
                    return
                yield data
        time.sleep(0.02)  # no writer yet, or it has just closed the pipe and is finishing


def _staged(plan, run, xorriso, tmpdir):
    """A private work directory holding the generated files and boot images of plan, and the
    ``{iso path: file}`` map of them."""
    if shutil.which(xorriso) is None and os.path.sep not in xorriso:
        raise IsoError("xorriso is not installed (Debian: apt-get install xorriso)")
    workdir = tempfile.mkdtemp(prefix="vmhost-iso-", dir=tmpdir)
    try:
        staging = write_staging(plan, workdir)
        if plan.boot:
            staging.update(build_grub_images(plan, workdir, run=run))
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return workdir, staging


def _failure(rc, errors):
    with open(errors, "rb") as f:
        msg = f.read().decode("utf-8", "replace").strip()
    lines = [ln for ln in msg.splitlines() if ": SORRY :" in ln or ": FAILURE :" in ln or "FATAL" in ln]
    return IsoError("xorriso failed (exit %d): %s" % (rc, "\n".join(lines or msg.splitlines()[-10:])))


def build(plan, sink, run=default_run, popen=_tools.spawn, xorriso="xorriso", tmpdir=None):
    """Stream the image described by plan into sink (see ImageSink); raise IsoError on failure."""
    workdir, staging = _staged(plan, run, xorriso, tmpdir)
    try:
        fifo = os.path.join(workdir, "image.fifo")
        os.mkfifo(fifo, 0o600)
        errors = os.path.join(workdir, "xorriso.log")
        argv = xorriso_command(plan, fifo, staging, xorriso=xorriso)
        rc = stream(argv, fifo, sink, tool_env(plan.epoch), popen=popen, stderr_path=errors, epoch=plan.epoch)
        if rc != 0:
            raise _failure(rc, errors)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return sink


class _Abandoned(Exception):
    pass


class _Follower(threading.Thread):
    """Hashes a file that another process writes from start to end, as it grows: the bytes
    below the file's size are final (xorriso writes a new image in one sequential pass), so
    the hash is ready when the writer is done, without a second pass over the file.

    With ``epoch``, the file is an ISO 9660 image whose node dates are first set to it
    (:func:`.stamp.stamp_dates`, written back into the file) as soon as its directory trees
    are there, and the hash covers the stamped bytes."""

    def __init__(self, path, writeback=False, epoch=None):
        threading.Thread.__init__(self, name="sha256 of " + path)
        self.daemon = True
        self.fd = os.open(path, (os.O_RDWR if epoch is not None else os.O_RDONLY) | getattr(os, "O_CLOEXEC", 0))
        # ``writeback``: start writing each hashed piece to the disk (not waiting for it), so
        # that the fsync before the rename has little left to wait for
        self.writeback = _writeback_starter() if writeback else None
        self.epoch = epoch
        self.hash = hashlib.sha256()
        self.size = 0
        self.finished = threading.Event()
        self.abandoned = False
        self.error = None

    def run(self):
        try:
            if self.epoch is not None:
                self._stamp()
            while True:
                data = self._more(self.size)
                if not data:
                    return
                self._hashed(data)
        except _Abandoned:
            pass
        except Exception as exc:  # pylint: disable=broad-except
            self.error = exc

    def _more(self, offset):
        """The next bytes of the file from offset, waiting for the writer; b"" once it is gone."""
        while not self.abandoned:
            last = self.finished.is_set()   # the writer is gone: what is there is all
            data = os.pread(self.fd, 1 << 22, offset)
            if data or last:
                return data
            self.finished.wait(0.05)
        raise _Abandoned()

    def _hashed(self, data):
        self.hash.update(data)
        if self.writeback is not None:
            self.writeback(self.fd, self.size, len(data))
        self.size += len(data)

    def _stamp(self):
        start = ImageStart(lambda: self._more(len(start.data)))
        stamp_dates(start, self.epoch)
        for offset, data in start.changed_runs():
            os.pwrite(self.fd, data, offset)
        self._hashed(bytes(start.data))

    def stop(self, abandon=False):
        """Let the thread read what is there (``abandon``: nothing more) and end; close the file."""
        self.abandoned = abandon
        self.finished.set()
        if self.ident is not None:
            self.join()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def result(self):
        """(sha256, size) of the file, once its writer is gone."""
        self.stop()
        if isinstance(self.error, IsoError):
            raise IsoError("cannot set the dates of the new image: %s" % self.error)
        if self.error is not None:
            raise IsoError("cannot read the new image back: %s" % self.error)
        return self.hash.hexdigest(), self.size


def _writeback_starter():
    """``start(fd, offset, length)``: sync_file_range(SYNC_FILE_RANGE_WRITE), or None."""
    try:
        import ctypes
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
        call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    except (ImportError, OSError, AttributeError):
        return None
    return lambda fd, offset, length: call(fd, offset, length, 2)


def _die_with_parent():
    """In the child: end when the module is killed (no orphan xorriso writing on)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except Exception:  # pylint: disable=broad-except
        pass


class NewImage(object):
    """xorriso writing the image of a plan straight into ``out_path``, a new file (created
    here, 0600, in a private directory), in the background.  No pipe, no comparison: the
    file's bytes are hashed as xorriso writes them.  :meth:`finish` waits and returns
    ``(sha256, size)``; :meth:`abort` stops it.  Either way out_path is removed on failure and
    the staging directory always.

    ``argv`` is the command it runs: a caller that started it from a plan made without
    walking the source trees (:func:`.plan.make_plan` ``shallow``) compares it with the
    command of the full plan (:meth:`matches`) and keeps it only when they are equal."""

    def __init__(self, plan, out_path, run=default_run, popen=_tools.spawn, xorriso="xorriso", tmpdir=None):
        self.out_path = out_path
        self.proc = self.follower = self.workdir = None
        self.xorriso = xorriso
        fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        os.close(fd)
        try:
            self.workdir, self.staging = _staged(plan, run, xorriso, tmpdir)
            self.errors = os.path.join(self.workdir, "xorriso.log")
            self.argv = xorriso_command(plan, out_path, self.staging, xorriso=xorriso)
            self.follower = _Follower(out_path, writeback=True, epoch=plan.epoch)
            with open(self.errors, "wb") as errf:
                try:
                    self.proc = popen(self.argv, env=tool_env(plan.epoch), stdin=subprocess.DEVNULL, stdout=errf,
                                      stderr=errf, preexec_fn=_die_with_parent)
                except OSError as exc:
                    raise IsoError("cannot run %s: %s" % (self.argv[0], exc))
            self.follower.start()
        except BaseException:
            self.abort()
            raise

    def matches(self, plan):
        """Whether this run writes exactly the image of ``plan``."""
        return xorriso_command(plan, self.out_path, self.staging, xorriso=self.xorriso) == self.argv

    def finish(self):
        try:
            try:
                rc = self.proc.wait()
            finally:
                if self.proc.poll() is None:     # interrupted: stop the writer
                    self.proc.kill()
                    self.proc.wait()
            self.follower.stop()      # it reads what is there and ends
            if rc != 0:     # before the follower's error: a short image is xorriso's failure
                raise _failure(rc, self.errors)
            digest, size = self.follower.result()
            self.follower = None
            if size != os.stat(self.out_path).st_size:
                raise IsoError("xorriso changed %s while it was read back" % self.out_path)
        except BaseException:
            self.abort()
            raise
        shutil.rmtree(self.workdir, ignore_errors=True)
        return digest, size

    def abort(self):
        """Stop xorriso and remove what this run wrote."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.follower is not None:
            self.follower.stop(abandon=True)
            self.follower = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        try:
            os.unlink(self.out_path)
        except OSError:
            pass


def build_new(plan, out_path, **kwargs):
    """Let xorriso write the image of plan straight into out_path, a new file; return
    (sha256, size).  See :class:`NewImage`."""
    return NewImage(plan, out_path, **kwargs).finish()


def build_file(plan, out_path, **kwargs):
    """Write the image to out_path (replaced by a rename); return its sha256."""
    tmp = os.path.join(os.path.dirname(os.path.abspath(out_path)),
                       ".%s.%d.%s" % (os.path.basename(out_path), os.getpid(), os.urandom(4).hex()))
    digest = build_new(plan, tmp, **kwargs)[0]
    os.rename(tmp, out_path)
    return digest


# ---------------------------------------------------------------- comparing images


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()
