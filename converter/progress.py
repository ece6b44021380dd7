"""Progress bars for long conversions (tqdm; shown only after a second, silenced by ``-q``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .tensor import Tensor


def tracked(
    tensors: Iterable[Tensor], *, total: int, enabled: bool, desc: str = "writing"
) -> Iterator[Tensor]:
    """Yield ``tensors`` while advancing a byte-counting bar after each one."""
    if not enabled:
        yield from tensors
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, delay=1.0,
              leave=False) as bar:
        for tensor in tensors:
            yield tensor
            bar.update(tensor.nbytes)
