"""Running a batch: items converted in worker processes through the one ``convert`` path, a JSONL
manifest that ``resume`` continues from, a summary."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import registry
from ..errors import ConverterError, UsageError
from .discover import Item, discover, in_shard, unpack
from .remote import fetch, filesystem, is_url, read_text, upload, write_text

if TYPE_CHECKING:
    from concurrent.futures import Future

MANIFEST = "manifest.jsonl"


@dataclass
class Result:
    """One line of the manifest."""

    source: str
    output: str
    status: str  # "done", "failed", "skipped" (done before and unchanged)
    size: int
    mtime: float
    seconds: float = 0.0
    sha256: str | None = None
    error: str | None = None


def output_for(item: Item, out: Path, to: str) -> Path:
    fmt = registry.get(to)
    rel = Path(item.rel)
    name = rel.name
    for suffix in sorted((s for f in registry.formats().values() for s in f.suffixes), key=len,
                         reverse=True):
        if name.lower().endswith(suffix) and name != suffix:
            name = name[: -len(suffix)]
            break
    suffix = "" if fmt.name in ("tf", "npy") else fmt.suffixes[0]
    return out / rel.parent / (name + suffix)


def _shown(item: Item, out: str | Path, to: str) -> str:
    """Where the item's output goes, as the manifest records it (a URL for remote outputs)."""
    if is_url(str(out)):
        return f"{str(out).rstrip('/')}/{output_for(item, Path('.'), to).as_posix()}"
    return str(output_for(item, Path(out), to))


def _stat(item: Item) -> tuple[int, Any]:
    if item.stamp is not None:
        return item.stamp
    size, mtime = 0, 0.0
    for f in item.files:
        st = os.stat(f)
        size += st.st_size
        mtime = max(mtime, st.st_mtime)
    return size, mtime


def _outputs_of(path: Path, to: str) -> list[Path]:
    if to == "tf":
        return [path.with_name(path.name + ".index"),
                *sorted(path.parent.glob(path.name + ".data-*"))]
    return [path]


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


def _worker_init() -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)


@dataclass(frozen=True)
class Job:
    """What every item of a batch shares: where outputs go and how they are written."""

    out: str
    to: str
    rules: Any = None
    force: bool = False
    options: tuple[tuple[str, Any], ...] = ()  # writer options (compress, max_shard_size)


def convert_item(item: Item, job: Job) -> Result:
    """Convert one item (in a worker process); never raises for a bad checkpoint."""
    from ..api import convert

    out, to = job.out, job.to
    size, mtime = _stat(item)
    remote_out = is_url(out)
    dst = output_for(item, Path("." if remote_out else out), to)
    shown = _shown(item, out, to)
    start = time.perf_counter()
    scratch = None
    _worker["busy"] = True
    try:
        source = item.source
        if item.members or remote_out:
            scratch = Path(tempfile.mkdtemp(prefix="ckpt-batch-"))
        if item.remote:
            source = str(fetch(item, scratch))
        elif item.members:
            source = str(unpack(item, scratch))
        local = scratch / "out" / dst if remote_out else dst
        convert(source, local, to=to, rules=job.rules, force=job.force,
                **dict(job.options)).close()
        produced = _outputs_of(local, to)
        digest = _digest(produced)
        if remote_out:
            upload(produced, out, str(dst.parent))
        return Result(item.key, shown, "done", size, mtime, time.perf_counter() - start,
                      digest)
    except (ConverterError, OSError) as exc:
        message = str(exc) if isinstance(exc, ConverterError) else f"{exc.strerror or exc}"
        return Result(item.key, shown, "failed", size, mtime, time.perf_counter() - start,
                      error=message.splitlines()[0] if message else type(exc).__name__)
    finally:
        _worker["busy"] = False
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        if _worker["terminated"]:
            os._exit(143)  # a pool worker would otherwise wait for work from a parent now gone


def read_manifest(out: Path) -> dict[str, dict]:
    """The last record of each source in ``out/manifest.jsonl``."""
    records: dict[str, dict] = {}
    path = out / MANIFEST
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
                records[record["source"]] = record
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by an interruption
    return records


def _unchanged(item: Item, record: dict | None) -> bool:
    if not record or record.get("status") not in ("done", "skipped"):
        return False
    if [record.get("size"), record.get("mtime")] != list(_stat(item)):
        return False
    output = record["output"]
    if is_url(output):
        fs, path = filesystem(output)
        return fs.exists(path) or fs.exists(path + ".index")
    return Path(output).exists() or Path(output + ".index").exists()


def batch(sources: list[str], *, to: str, out: str | os.PathLike[str], rules: Any = None,
          jobs: int | None = None, resume: bool = False, latest: bool = False,
          shard: tuple[int, int] | None = None, force: bool = False,
          progress: bool = False, executor: str = "local",
          scheduler: str | None = None, **options: Any) -> list[Result]:
    """Convert every checkpoint found under ``sources`` into ``out`` (mirroring the tree).

    Args:
        sources: files, TF prefixes, directories (searched recursively), globs, archives.
        to: output format name.
        out: output directory; ``out/manifest.jsonl`` records every item.
        rules: :class:`converter.rules.Rules` for every item.
        jobs: worker processes (default: the number of cores).
        resume: skip items done before and unchanged since (size, mtime); redo the rest.
        latest: only the latest checkpoint of each training directory.
        shard: ``(i, n)``, i counting from 1: this machine's share of the items.
        force: overwrite existing outputs.
        progress: show a progress bar.
        executor: ``"local"`` (worker processes here) or ``"dask"`` (the workers of a Dask
            ``distributed`` cluster at ``scheduler``; they must see the same paths).
        scheduler: the Dask scheduler address (``tcp://host:8786``) for ``executor="dask"``.
        **options: writer options for every item (``compress=True``, ``max_shard_size=...``).

    Returns:
        One :class:`Result` per item, in input order; failures do not stop the batch.
    """
    registry.get(to)
    if executor not in ("local", "dask"):
        raise UsageError(f"unknown executor {executor!r} (local or dask)")
    if executor == "dask" and not scheduler:
        raise UsageError("--executor dask needs --scheduler ADDRESS")
    remote_out = is_url(str(out))
    if remote_out:  # the manifest is kept here and uploaded as it grows
        out = str(out).rstrip("/")
        manifest_dir = Path(tempfile.mkdtemp(prefix="ckpt-batch-manifest-"))
        (manifest_dir / MANIFEST).write_text(read_text(f"{out}/{MANIFEST}") or "")
    else:
        out = manifest_dir = Path(out)
        out.mkdir(parents=True, exist_ok=True)
    try:
        job = Job(str(out), to, rules, force or resume, tuple(sorted(options.items())))
        # (a resumed item may have left a complete older output: it is redone in place)
        return _run(sources, job, manifest_dir, jobs, resume, latest, shard, progress, executor,
                    scheduler)
    finally:
        if remote_out:
            write_text(f"{out}/{MANIFEST}", (manifest_dir / MANIFEST).read_text())
            shutil.rmtree(manifest_dir, ignore_errors=True)


def _run(sources: list[str], job: Job, manifest_dir: Path, jobs: int | None, resume: bool,
         latest: bool, shard: tuple[int, int] | None, progress: bool, executor: str,
         scheduler: str | None) -> list[Result]:
    items = [i for i in discover(list(map(str, sources)), latest=latest) if in_shard(i, shard)]
    previous = read_manifest(manifest_dir) if resume else {}
    results: dict[str, Result] = {}
    todo = []
    for item in items:
        record = previous.get(item.key)
        if resume and _unchanged(item, record):
            results[item.key] = Result(**{**record, "status": "skipped", "seconds": 0.0})
        else:
            todo.append(item)
    total = sum(_stat(i)[0] for i in todo)
    bar = _bar(len(todo), total, progress)
    with open(manifest_dir / MANIFEST, "a", encoding="utf-8") as manifest:
        for key in [i.key for i in items if i.key in results]:
            _log(manifest, results[key])
        if executor == "dask":
            _dask(todo, job, scheduler, results, manifest, bar)
        elif jobs == 1 or len(todo) <= 1:
            for item in todo:
                _record(convert_item(item, job), results, manifest, bar)
        else:
            _parallel(todo, job, jobs, results, manifest, bar)
    if bar is not None:
        bar.close()
    return [results[i.key] for i in items if i.key in results]


def _parallel(todo: list[Item], job: Job, jobs: int | None, results: dict[str, Result],
              manifest, bar) -> None:
    # Imported here: the pool machinery is a tenth of `ckpt`'s start-up, and one conversion
    # never needs it.
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    workers = jobs or os.cpu_count() or 1
    pool = ProcessPoolExecutor(workers, mp_context=get_context("fork"), initializer=_worker_init)
    pending: dict[Future, Item] = {}
    queue = list(todo)
    try:
        while queue or pending:
            while queue and len(pending) < 2 * workers:
                item = queue.pop(0)
                pending[pool.submit(convert_item, item, job)] = item
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                item = pending.pop(future)
                _record(_outcome(future, item, job), results, manifest, bar)
    except BaseException:
        for future in pending:
            future.cancel()
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()  # SIGTERM: each worker removes its temporary files
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _dask(todo: list[Item], job: Job, scheduler: str, results: dict[str, Result], manifest,
          bar) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise UsageError('--executor dask needs the dask extra: pip install '
                         '"ckpt-converter[dask]"') from None
    with Client(scheduler) as client:
        futures = {client.submit(convert_item, item, job, pure=False, key=f"convert-{i}"): item
                   for i, item in enumerate(todo)}
        try:
            for future in as_completed(futures):
                item = futures[future]
                _record(_outcome(future, item, job), results, manifest, bar)
        except BaseException:
            client.cancel(list(futures))
            raise


def _outcome(future: Any, item: Item, job: Job) -> Result:
    try:
        return future.result()
    except Exception as exc:  # the worker died or the task could not run: report it, go on
        size, mtime = _stat(item)
        return Result(item.key, _shown(item, job.out, job.to), "failed", size, mtime,
                      error=f"worker failed: {type(exc).__name__}: {exc}")


def _record(result: Result, results: dict[str, Result], manifest, bar) -> None:
    results[result.source] = result
    _log(manifest, result)
    _advance(bar, result)


def _log(manifest, result: Result) -> None:
    manifest.write(json.dumps(asdict(result)) + "\n")
    manifest.flush()
    os.fsync(manifest.fileno())


def _bar(items: int, total: int, enabled: bool):
    if not enabled or not items:
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="batch",
               delay=1.0)
    bar.set_postfix_str(f"0/{items} items", refresh=False)
    bar.items = items  # type: ignore[attr-defined]
    bar.done = 0  # type: ignore[attr-defined]
    return bar


def _advance(bar, result: Result) -> None:
    if bar is None:
        return
    bar.done += 1
    bar.update(result.size)
    bar.set_postfix_str(f"{bar.done}/{bar.items} items", refresh=False)


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r}: expected I/N, e.g. 1/3") from None
    if not 1 <= i <= n:
        raise UsageError(f"--shard {text!r}: I counts from 1 to N")
    return i, n
