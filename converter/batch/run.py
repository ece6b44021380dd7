"""Running a batch: items converted in worker processes through the one ``convert`` path, a JSONL
manifest that ``resume`` continues from, a summary."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import registry, storage
from .._tempfiles import discard
from ..errors import ConverterError, UsageError
from .archive import extract
from .discover import discover, in_shard
from .items import INDEX, SHARDS_INDEX, Item, is_bundle_index, is_url
from .manifest import MANIFEST, Result, log, open_manifest, read_manifest
from .plan import check_outputs, shown
from .remote import read_bytes, write_bytes
from .scratch import Scratch
from .worker import Job, convert_item, failed, stat, worker_init

if TYPE_CHECKING:
    from concurrent.futures import Future

__all__ = ["MANIFEST", "Result", "batch", "parse_shard"]


# What marks an item's output as present: the file or directory itself, a TF prefix's index,
# a sharded safetensors output's index.
_ENDS = ("", INDEX, SHARDS_INDEX)


def _unchanged(item: Item, record: dict | None, job: Job) -> bool:
    if not record or record.get("status") not in ("done", "skipped"):
        return False
    if record.get("conversion") != job.conversion:
        return False  # converted differently before (or by a version that did not say how)
    if [record.get("size"), record.get("mtime")] != list(stat(item)):
        return False
    output = record["output"]
    if is_url(output):
        return any(storage.exists(output + end) for end in _ENDS)
    return any(Path(output + end).exists() for end in _ENDS)


def batch(sources: list[str], *, to: str, out: str | os.PathLike[str], rules: Any = None,
          jobs: int | None = None, resume: bool = False, latest: bool = False,
          shard: tuple[int, int] | None = None, force: bool = False,
          progress: bool = False, executor: str = "local",
          scheduler: str | None = None, dry_run: bool = False,
          max_unpacked: int | None = None, storage_options: Mapping[str, Any] | None = None,
          **options: Any) -> list[Result]:
    """Convert every checkpoint found under ``sources`` into ``out`` (mirroring the tree).

    Args:
        sources: files, TF prefixes, directories (searched recursively), globs, archives.
        to: output format name.
        out: output directory; ``out/manifest.jsonl`` records every item.
        rules: :class:`converter.rules.Rules` for every item.
        jobs: worker processes (default: the number of cores).
        resume: skip items done before with the same conversion (format, rules, writer
            options) and unchanged since (size, mtime); redo the rest.
        latest: only the latest checkpoint of each training directory.
        shard: ``(i, n)``, i counting from 1: this machine's share of the items.
        force: overwrite existing outputs.
        progress: show a progress bar.
        executor: ``"local"`` (worker processes here) or ``"dask"`` (the workers of a Dask
            ``distributed`` cluster at ``scheduler``; they must see the same paths).
        scheduler: the Dask scheduler address (``tcp://host:8786``) for ``executor="dask"``.
        dry_run: write nothing; return the plan (status "planned", "skipped" or "failed").
        max_unpacked: the most bytes an archive may unpack to (default: 20 times its size,
            at least 1 GiB).
        storage_options: fsspec options for remote sources and ``out`` (credentials,
            ``endpoint_url`` ...), handed to every worker; never recorded in the manifest.
        **options: writer options for every item (``compress=True``, ``max_shard_size=...``).

    Returns:
        One :class:`Result` per item, in input order; failures do not stop the batch. Items
        whose output would lie outside ``out`` or collide with another item's fail.
    """
    for url in [*sources, str(out)]:  # a new run: not the reads of a checkpoint closed before
        if is_url(url):
            storage.reopen(url)
    with storage.options(storage_options):
        return _batch(sources, to, out, rules, jobs, resume, latest, shard, force, progress,
                      executor, scheduler, dry_run, max_unpacked, storage_options or {},
                      options)


def _batch(sources: list[str], to: str, out: str | os.PathLike[str], rules: Any,
           jobs: int | None, resume: bool, latest: bool, shard: tuple[int, int] | None,
           force: bool, progress: bool, executor: str, scheduler: str | None, dry_run: bool,
           max_unpacked: int | None, storage_options: Mapping[str, Any],
           options: dict[str, Any]) -> list[Result]:
    registry.for_output(str(out), to)  # a format that cannot be written: before anything
    if executor not in ("local", "dask"):
        raise UsageError(f"unknown executor {executor!r} (local or dask)")
    if executor == "dask" and not scheduler:
        raise UsageError("--executor dask needs --scheduler ADDRESS")
    remote_out = is_url(str(out))
    out = str(out).rstrip("/") if remote_out else Path(out)
    job = Job(str(out), to, rules, force or resume, tuple(sorted(options.items())),
              max_unpacked=max_unpacked, storage_options=tuple(sorted(storage_options.items())))
    # A source that names nothing is refused before DIR or its manifest is made.
    found = discover(list(map(str, sources)), latest=latest)
    # (a resumed item may have left a complete older output: it is redone in place)
    if dry_run:
        previous = {}
        if resume and remote_out:
            with tempfile.TemporaryDirectory(prefix="ckpt-manifest-") as d:
                previous = read_manifest(_download_manifest(str(out), Path(d) / "manifest"))
        elif resume:
            previous = read_manifest(Path(out))
        return _plan(found, job, previous, shard, formats=True)[0]
    scratch = Scratch()
    try:
        job = replace(job, scratch=str(scratch.path))
        if remote_out:  # the manifest is kept here and uploaded as it grows
            manifest_dir = _download_manifest(str(out), scratch.path / "manifest")
        else:
            manifest_dir = Path(out)
            manifest_dir.mkdir(parents=True, exist_ok=True)
        def publish() -> None:
            write_bytes(f"{out}/{MANIFEST}", (manifest_dir / MANIFEST).read_bytes())

        try:
            return _run(found, job, manifest_dir, scratch.path, jobs, resume, shard,
                        progress, executor, scheduler, publish if remote_out else None)
        finally:
            if remote_out:
                publish()
    finally:
        scratch.close()


def _download_manifest(out: str, into: Path) -> Path:
    """Download the remote DIR's manifest (empty while there is none) into the new directory
    ``into``, once: a resumed run reads it there; returns ``into``."""
    into.mkdir()
    (into / MANIFEST).write_bytes(read_bytes(f"{out}/{MANIFEST}") or b"")
    return into


def _plan(found: list[Item], job: Job, previous: dict[str, dict],
          shard: tuple[int, int] | None, formats: bool = False
          ) -> tuple[list[Result], list[Item]]:
    """Every item's fate before any is converted: failed (a problem found while looking, an
    output outside DIR or colliding), skipped (resumed and unchanged), or planned."""
    problems = check_outputs(found, job.out, job.to)  # across shards: every machine agrees
    results, todo = [], []
    for item in found:
        if not in_shard(item, shard):
            continue
        if item.key in problems:
            results.append(failed(item, job, problems[item.key]))
        elif _unchanged(item, previous.get(item.key), job):
            record = previous[item.key]
            results.append(Result.from_record({**record, "status": "skipped",
                                               "seconds": 0.0}))
        else:
            size, mtime = stat(item)
            results.append(Result(item.key, shown(item, job.out, job.to), "planned", size,
                                  mtime, conversion=job.conversion,
                                  format=_format(item) if formats else None))
            todo.append(item)
    return results, todo


def _format(item: Item) -> str | None:
    """The source format, for the plan: sniffed where the item is on this disk, else named by
    its suffix (a bundle's parts make it ``tf``)."""
    if not item.members:
        fmt = registry.detect_or_none(Path(item.source))
    elif any(is_bundle_index(m) for m in item.members):
        return "tf"
    elif item.remote and (marked := _marked(item)):
        return marked
    else:
        fmt = registry.by_suffix(Path(item.read_as))
    return fmt.name if fmt else None


def _marked(item: Item) -> str | None:
    """The format whose mark lies at the top of a remote directory item."""
    top = {storage.name(m) for m in item.members
           if storage.parent(m) == item.source.rstrip("/")}
    return next((f.name for f in registry.formats().values() if top & set(f.marks)), None)


MANIFEST_EVERY = 5.0  # seconds between uploads of a remote DIR's manifest while items finish


class _Publishing:
    """The manifest file, uploaded to the remote DIR after a record at most every
    MANIFEST_EVERY seconds, so that a run killed outright (SIGKILL, a lost node) leaves
    ``--resume`` most of what it did. A failed upload here waits for the next or the last."""

    def __init__(self, f: Any, publish: Callable[[], None]) -> None:
        self.f, self.publish, self.last = f, publish, time.monotonic()

    def write(self, text: str) -> int:
        return self.f.write(text)

    def fileno(self) -> int:
        return self.f.fileno()

    def flush(self) -> None:
        self.f.flush()
        now = time.monotonic()
        if now - self.last >= MANIFEST_EVERY:
            self.last = now
            with contextlib.suppress(ConverterError):
                self.publish()


def _run(found: list[Item], job: Job, manifest_dir: Path, scratch: Path, jobs: int | None,
         resume: bool, shard: tuple[int, int] | None, progress: bool,
         executor: str, scheduler: str | None,
         publish: Callable[[], None] | None = None) -> list[Result]:
    previous = read_manifest(manifest_dir) if resume else {}
    planned, todo = _plan(found, job, previous, shard)
    results = {r.source: r for r in planned if r.status != "planned"}
    bar = _bar(len(todo), sum(stat(i)[0] for i in todo), progress)
    # Archives are unpacked here, once each, in one pass (Dask workers may be elsewhere and
    # unpack their own members).
    archives = _Archives(todo, scratch / "archives", job) if executor == "local" else None
    with open_manifest(manifest_dir) as opened:
        manifest: Any = opened if publish is None else _Publishing(opened, publish)
        for r in planned:
            if r.status != "planned":
                log(manifest, r)
        if archives is None:  # executor "dask"; run() refused it without a scheduler
            if not scheduler:
                raise UsageError("--executor dask needs --scheduler ADDRESS")
            _dask(todo, job, scheduler, results, manifest, bar)
        elif jobs == 1 or len(todo) <= 1:
            for item in todo:
                ready = archives.prepare(item)
                result = ready if isinstance(ready, Result) else convert_item(ready, job)
                archives.finished(item)
                _record(result, results, manifest, bar)
        else:
            _parallel(todo, job, jobs, results, manifest, bar, archives)
    if bar is not None:
        bar.close()
    return [results[r.source] for r in planned if r.source in results]


class _Archives:
    """Each archive among the items, unpacked when its first item is due and removed when
    its last one is done."""

    def __init__(self, todo: list[Item], root: Path, job: Job) -> None:
        self.root, self.job = root, job
        self.wanted: dict[str, dict[str, int]] = {}
        self.left: dict[str, int] = {}
        for item in todo:
            if item.members and not item.remote:
                members = zip(item.members, item.sizes, strict=True)
                self.wanted.setdefault(item.source, {}).update(members)
                self.left[item.source] = self.left.get(item.source, 0) + 1
        self.dirs: dict[str, Path] = {}
        self.errors: dict[str, str] = {}
        self.unpacked = 0  # directories made so far: finished archives' are gone, not reused

    def prepare(self, item: Item) -> Item | Result:
        archive = item.source
        if archive not in self.left:
            return item
        if archive not in self.dirs and archive not in self.errors:
            into = self.root / str(self.unpacked)
            self.unpacked += 1
            try:
                extract(Path(archive), self.wanted[archive], into, self.job.max_unpacked)
                self.dirs[archive] = into
            except ConverterError as exc:
                discard(into)
                self.errors[archive] = str(exc)
        if archive in self.errors:
            return failed(item, self.job, self.errors[archive])
        return replace(item, unpacked=str(self.dirs[archive]))

    def finished(self, item: Item) -> None:
        if item.source in self.left:
            self.left[item.source] -= 1
            if not self.left[item.source] and item.source in self.dirs:
                discard(self.dirs.pop(item.source))


def _parallel(todo: list[Item], job: Job, jobs: int | None, results: dict[str, Result],
              manifest, bar, archives: _Archives) -> None:
    # Imported here: the pool machinery is a tenth of `ckpt`'s start-up, and one conversion
    # never needs it.
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    workers = jobs or os.cpu_count() or 1
    pool = ProcessPoolExecutor(workers, mp_context=get_context("fork"), initializer=worker_init,
                               initargs=(os.getpid(),))
    pending: dict[Future, Item] = {}
    queue = list(todo)
    try:
        while queue or pending:
            while queue and len(pending) < 2 * workers:
                item = queue.pop(0)
                ready = archives.prepare(item)
                if isinstance(ready, Result):
                    archives.finished(item)
                    _record(ready, results, manifest, bar)
                    continue
                pending[pool.submit(convert_item, ready, job)] = item
            if not pending:
                continue
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                item = pending.pop(future)
                archives.finished(item)
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
        return failed(item, job, f"worker failed: {type(exc).__name__}: {exc}")


def _record(result: Result, results: dict[str, Result], manifest, bar) -> None:
    results[result.source] = result
    log(manifest, result)
    _advance(bar, result)


def _bar(items: int, total: int, enabled: bool):
    if not enabled or not items:
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="batch",
               delay=1.0)
    bar.set_postfix_str(f"0/{items} items", refresh=False)
    bar.items = items
    bar.done = 0
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
