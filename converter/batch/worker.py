"""One batch item, converted in a worker process: fetch or unpack it into scratch space,
convert it through the one ``convert`` path, upload it. Workers end when their parent does."""

from __future__ import annotations

import hashlib
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import storage
from .._tempfiles import discard
from ..errors import ConverterError
from ..outputs import recording
from .archive import extract
from .items import Item, is_url
from .manifest import Result
from .plan import conversion_key, output_for, output_name, shown
from .remote import upload
from .scratch import Scratch

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Job:
    """What every item of a batch shares: where outputs go and how they are written.
    ``conversion`` (:func:`conversion_key` of ``to``, ``rules`` and ``options``) is worked out
    once, here, and travels to the workers with the job: rules made in code may be known only by
    their ``repr``, which can differ in another process."""

    out: str
    to: str
    rules: Any = None
    force: bool = False
    options: tuple[tuple[str, Any], ...] = ()  # writer options (compress, max_shard_size)
    scratch: str = ""  # the run's scratch directory, where this machine has one
    max_unpacked: int | None = None
    # fsspec options for remote sources and outputs (credentials): not shown, not recorded.
    storage_options: tuple[tuple[str, Any], ...] = field(default=(), repr=False)
    conversion: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "conversion", conversion_key(self.to, self.rules, self.options))


def stat(item: Item) -> tuple[int, Any]:
    if item.stamp is not None:
        return item.stamp
    size, mtime = 0, 0.0
    for f in item.files:
        try:
            st = os.stat(f)
        except OSError:
            continue  # reported when the item is read
        size += st.st_size
        mtime = max(mtime, st.st_mtime)
    return size, mtime


def failed(item: Item, job: Job, message: str, seconds: float = 0.0) -> Result:
    size, mtime = stat(item)
    return Result(item.key, shown(item, job.out, job.to), "failed", size, mtime, seconds,
                  error=message.splitlines()[0] if message else "failed",
                  conversion=job.conversion)


def _outputs_of(committed: list[Path | str], to: str) -> list[Path]:
    """The files that make up the output among those the conversion committed (local files:
    a batch writes into its scratch directory): not a TF bundle's state file, which names this
    scratch directory's prefixes only."""
    files = [Path(p) for p in committed]
    if to == "tf":
        return [p for p in files if p.name != "checkpoint"]
    return files


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            with open(f, "rb") as fh:
                while chunk := fh.read(8 << 20):
                    h.update(chunk)
    return h.hexdigest()


_worker = {"busy": False, "terminated": False}


def _on_sigterm(*_: object) -> None:
    # Mid-conversion, SIGTERM becomes an exception so the writer removes its temporary files on
    # the way out (convert_item then ends the process); an idle worker just ends. A second one
    # (the shell's and the parent's arrive together) must not cut that cleanup short.
    if _worker["terminated"]:
        return
    _worker["terminated"] = True
    if _worker["busy"]:
        raise SystemExit(143)
    os._exit(143)


def worker_init(parent: int) -> None:
    """Pool initializer: SIGTERM ends the worker cleanly, and so does its parent's death (a
    parent killed with SIGKILL cannot stop its workers, and an orphaned worker would wait for
    work forever)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)  # Linux: the kernel tells us
    except (OSError, AttributeError):
        pass  # elsewhere the watch below does it
    if os.getppid() != parent:  # the parent died before the request above took effect
        os._exit(143)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def _item_scratch(job: Job) -> tuple[Path, Scratch | None]:
    """Scratch space for one item: inside the run's (its lock covers it), or where this
    machine has none, a locked directory of its own (``(path, what removes it)``): an unlocked
    one a long conversion leaves unchanged would look like a killed run's to another batch."""
    if job.scratch and os.path.isdir(job.scratch):
        return Path(tempfile.mkdtemp(prefix="ckpt-batch-item-", dir=job.scratch)), None
    own = Scratch()
    return own.path, own


def _made(scratch: Path | None, item: Item) -> Path:
    """The item's scratch directory, which convert_item makes for every item that needs one
    (remote, packed in an archive, or written to remote storage)."""
    if scratch is None:
        raise ConverterError(f"{item.key}: no scratch directory to work in")
    return scratch


def convert_item(item: Item, job: Job) -> Result:
    """Convert one item (in a worker process); never raises for a bad checkpoint."""
    from ..api import convert

    if item.problem:
        return failed(item, job, item.problem)
    out, to = job.out, job.to
    size, mtime = stat(item)
    remote_out = is_url(out)
    dst = output_for(item, Path("." if remote_out else out), to)
    if to == "hf" and (item.members or item.remote):
        # A release's config and tokenizer lie beside its checkpoint; an archive member or an
        # object is fetched alone, so the directory would be built without them.
        return failed(item, job, f"{item.key}: --to hf converts a checkpoint with the files "
                                 "beside it; unpack the archive or copy the objects first")
    start = time.perf_counter()
    scratch, own = None, None
    _worker["busy"] = True
    try:
        source = item.source
        if (item.members and not item.unpacked) or remote_out or item.remote:
            scratch, own = _item_scratch(job)
        if item.remote:
            # Read where it lies, by ranges: only the bytes of its tensors cross the network.
            source = item.source
        elif item.unpacked:
            source = str(Path(item.unpacked) / item.read_as)
        elif item.members:  # not unpacked by the parent (a Dask worker elsewhere): just these
            into = _made(scratch, item)
            extract(Path(item.source), dict(zip(item.members, item.sizes, strict=True)), into,
                    job.max_unpacked)
            source = str(into / item.read_as)
        local = _made(scratch, item) / "out" / dst if remote_out else dst
        with recording() as committed, storage.options(dict(job.storage_options)), \
                storage.scratch(scratch):  # a sharded output has no file named ``local``
            convert(source, local, to=to, rules=job.rules, force=job.force,
                    **dict(job.options)).close()
        produced = _outputs_of(committed, to)
        digest = _digest(produced)
        if remote_out:
            with storage.options(dict(job.storage_options)):
                upload(produced, out, output_name(item, to)[0])
        return Result(item.key, shown(item, out, to), "done", size, mtime,
                      time.perf_counter() - start, digest, conversion=job.conversion)
    except (ConverterError, OSError, RecursionError) as exc:
        if isinstance(exc, ConverterError):
            message = str(exc)
        elif isinstance(exc, RecursionError):
            message = f"{item.key}: nested too deeply to convert"
        else:
            message = f"{exc.strerror or exc}"
        return failed(item, job, message or type(exc).__name__, time.perf_counter() - start)
    finally:
        _worker["busy"] = False
        if own is not None:
            own.close()
        elif scratch is not None:
            discard(scratch)
        if _worker["terminated"]:
            os._exit(143)  # a pool worker would otherwise wait for work from a parent now gone
