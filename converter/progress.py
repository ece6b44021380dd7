"""Progress bars for long conversions (tqdm; shown only after a second, silenced by ``-q``)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from .tensor import Tensor

DELAY = 1.0  # seconds before a bar appears: quick conversions show none


def tracked(
    tensors: Iterable[Tensor], *, total: int, enabled: bool, desc: str = "writing"
) -> Iterator[Tensor]:
    """Yield ``tensors`` while advancing a byte-counting bar after each one."""
    if not enabled:
        yield from tensors
        return
    # The bar (and tqdm's import, a tenth of a small conversion's start-up) waits until the
    # work has run for DELAY seconds.
    deadline = time.monotonic() + DELAY
    done = 0
    it = iter(tensors)
    for tensor in it:
        yield tensor
        done += tensor.nbytes
        if time.monotonic() >= deadline:
            break
    else:
        return
    from tqdm import tqdm

    with tqdm(total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
              leave=False) as bar:
        for tensor in it:
            yield tensor
            bar.update(tensor.nbytes)
