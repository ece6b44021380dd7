"""The intermediate every reader produces and every writer consumes.

A ``Tensor`` knows its name, dtype and shape without holding data; ``read()`` fetches the values
(from a memory map or a file span) only when a writer or a user asks. A ``Checkpoint`` is an
ordered mapping of names to tensors plus string ``metadata`` (the user's, written into outputs
that can hold it) and a ``source`` record (what the reader found out; never written). A plain
``dict`` of numpy arrays is accepted wherever a Checkpoint is (see :func:`as_checkpoint`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from . import dtypes
from .errors import FormatError
from .kinds import tf1_kind

if TYPE_CHECKING:
    import numpy as np

# What a tensor is for: a model variable, optimizer state, a step counter, a TF2 checkpoint's
# object graph, or (TF2 keys the object graph does not name) something else.
Kind = Literal["variable", "slot", "counter", "object_graph", "other"]

Span = tuple[str, int, int]


class ZipMember(NamedTuple):
    """A stored zip member that a span lies in, in the span's file: zlib's CRC-32 covers the
    whole member, and it is the only checksum those bytes have."""

    offset: int
    size: int
    crc: int
    # Named in errors when the member holds more than the one tensor (a .keras archive's
    # weights); an npz member is its tensor, which the error names instead.
    name: str = ""


class Tensor:
    """A named, lazily read array.

    Attributes:
        name: the tensor's name in its checkpoint (``dense/kernel``).
        dtype: numpy dtype (ml_dtypes for bfloat16 and friends; ``object`` for byte strings).
        dtype_name: its canonical name (``float32``, ``bfloat16``, ``string``); readers that
            know dtypes by name answer it without importing numpy.
        holds_strings: whether the values are byte strings, also without numpy.
        shape: tuple of ints.
        kind: ``variable``, ``slot`` (optimizer state), ``counter`` (``global_step``,
            ``save_counter``), ``object_graph`` or ``other``; set by readers, used by rules.
            When a format does not record it, it is judged from TF1 naming conventions.
        span: ``(path, offset, nbytes)`` of the raw little-endian C-order bytes in a file,
            when the tensor is stored that way, so a writer may copy bytes without decoding.
        crc32c: the (unmasked) crc32c the file records for the span's bytes, if any; a writer
            that copies the span checks it, as ``read()`` does.
        member_crc: the :class:`ZipMember` (npz, ``.keras``) the span lies in: whoever streams
            the span checks the member's CRC-32 first, as ``read()``, numpy.load and Keras do.
        attrs: format-specific facts (e.g. the TF2 object path of a variable).
    """

    # ``_dtype`` is a numpy dtype, or a canonical dtype name (``float32``) that readers which
    # know only names give: it becomes a numpy dtype when ``dtype`` is first asked for, so a
    # listing never imports numpy.
    __slots__ = ("name", "_dtype", "shape", "size", "_kind", "span", "crc32c", "member_crc",
                 "attrs", "_load")

    def __init__(
        self,
        name: str,
        dtype: Any,
        shape: tuple[int, ...],
        load: Callable[[], np.ndarray],
        *,
        kind: Kind | None = None,
        span: Span | None = None,
        crc32c: int | None = None,
        attrs: dict[str, str] | None = None,
        member_crc: ZipMember | None = None,
    ) -> None:
        import numpy as np

        self.name = name
        self._dtype = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
        self.shape = shape if type(shape) is tuple and all(type(d) is int for d in shape) \
            else tuple(int(d) for d in shape)
        self.size = math.prod(self.shape)
        self._kind = kind
        self.span = span
        self.crc32c = crc32c
        self.member_crc = member_crc
        self.attrs = attrs if attrs is not None else {}
        self._load = load

    @classmethod
    def _trusted(cls, name: str, dtype: np.dtype | str, shape: tuple[int, ...], size: int,
                 load: Callable[[], np.ndarray], kind: Kind | None, span: Span | None,
                 crc32c: int | None, attrs: dict[str, str],
                 member_crc: ZipMember | None = None) -> Tensor:
        # For readers that open tens of thousands of tensors: the fields are already checked
        # (dtype a numpy dtype or a name in dtypes.ALL, shape a tuple of ints, size its
        # product), so skip the checks.
        self = cls.__new__(cls)
        self.name, self._dtype, self.shape, self.size = name, dtype, shape, size
        self._kind, self.span, self.crc32c, self.attrs, self._load = \
            kind, span, crc32c, attrs, load
        self.member_crc = member_crc
        return self

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype (ml_dtypes for bfloat16 and friends; ``object`` for byte strings)."""
        dtype = self._dtype
        if type(dtype) is str:
            dtype = self._dtype = dtypes.from_name(dtype)
        return dtype

    @property
    def dtype_name(self) -> str:
        """The dtype's canonical name (``float32``, ``bfloat16``, ``string``), as
        :func:`converter.dtypes.name_of` gives it."""
        dtype = self._dtype
        return dtype if type(dtype) is str else dtypes.name_of(dtype)

    @property
    def holds_strings(self) -> bool:
        """Whether the values are byte strings (``dtype`` object): answered from a reader's
        dtype name without numpy, and for any numpy dtype, even one with no canonical name."""
        dtype = self._dtype
        return dtype == "string" if type(dtype) is str else dtype.hasobject

    @property
    def kind(self) -> Kind:
        # Formats that do not record roles fall back to what TF1 names say; judged on first
        # use, since a plain conversion never asks.
        if self._kind is None:
            self._kind = tf1_kind(self.name)
        return self._kind

    @kind.setter
    def kind(self, value: Kind) -> None:
        self._kind = value

    @classmethod
    def from_array(cls, name: str, array: Any, *, kind: Kind | None = None) -> Tensor:
        """Wrap an in-memory array (anything ``np.asarray`` accepts)."""
        import numpy as np

        array = np.asarray(array)
        return cls(name, array.dtype, array.shape, lambda: array, kind=kind)

    def read(self) -> np.ndarray:
        """Return the values (a read-only view where the reader can give one).

        Raises:
            FormatError: for a shape without elements that numpy cannot make an array of
                (``(0, 2**61)`` float32: its other dimensions span more than 2**63 bytes).
        """
        if not self.size and unrepresentable(self.shape, self.dtype.itemsize):
            if self.span is not None:
                raise FormatError(too_large_for_numpy(f"{self.span[0]}: tensor {self.name!r}",
                                                      self.shape))
            try:  # the reader knows the file: let it say so
                return self._load()
            except ValueError:
                raise FormatError(too_large_for_numpy(f"tensor {self.name!r}", self.shape)
                                  ) from None
        return self._load()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        import numpy as np

        array = self.read()
        if dtype is not None and np.dtype(dtype) != array.dtype:
            return array.astype(dtype)
        return array.copy() if copy else array

    @property
    def nbytes(self) -> int:
        """Bytes of the values in memory (for strings: the span size when known, else 0)."""
        dtype = self._dtype
        itemsize = dtypes.ITEMSIZE[dtype] if type(dtype) is str else \
            0 if dtype.hasobject else dtype.itemsize
        if not itemsize:
            return self.span[2] if self.span else 0
        return self.size * itemsize

    def renamed(self, name: str) -> Tensor:
        """The same data under another name."""
        # The kind is judged here, from the old name: a renamed slot stays a slot.
        return Tensor._trusted(name, self._dtype, self.shape, self.size, self._load, self.kind,
                               self.span, self.crc32c, self.attrs, self.member_crc)

    def __repr__(self) -> str:
        return f"Tensor({self.name!r}, {self.dtype}, {self.shape}, kind={self.kind!r})"


def too_large_for_numpy(where: str, shape: tuple[int, ...]) -> str:
    return f"{where}: shape {list(shape)} holds no values, but is too large for a numpy array"


def unrepresentable(shape: tuple[int, ...], itemsize: int) -> bool:
    # numpy refuses an array whose nonzero dimensions times the item size pass its index
    # type, even when a zero dimension leaves it empty.
    return math.prod(d for d in shape if d) * max(itemsize, 1) >= 2**63


@dataclass(frozen=True)
class Source:
    """What a reader found out about the files it read: shown by ``ckpt inspect``, never
    written into an output (the same conversion elsewhere must give the same bytes).

    Attributes:
        format: registry name of the format that read it (``tf``, ``safetensors`` ...).
        path: what was read: the file or directory, or for TensorFlow the checkpoint prefix
            that the given path (directory, ``.index``, data shard) resolved to.
        layout: the variant within the format, where a format has several: ``tf1``, ``tf2``
            (object-based), ``tf1-v1`` (pre-2016 single file), ``keras2``/``keras3`` (HDF5
            written by Keras, ``.keras`` archives).
        step: the global step named by a TensorFlow prefix (``model.ckpt-1000``).
        shards: how many data files hold the tensors, for formats that shard.
        checkpoints: for a training directory, every ``(prefix, step)`` in it, oldest first
            (``step`` is None for a prefix without one).
        saved_model: the SavedModel directory, when the checkpoint is its ``variables/``.
        facts: other format-specific strings (``model_class`` of a ``.keras`` archive ...).
    """

    format: str
    path: str
    layout: str | None = None
    step: int | None = None
    shards: int | None = None
    checkpoints: tuple[tuple[str, int | None], ...] = ()
    saved_model: str | None = None
    facts: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Frozen all the way down: a record shared by every view of a checkpoint.
        object.__setattr__(self, "checkpoints", tuple(tuple(c) for c in self.checkpoints))
        object.__setattr__(self, "facts", MappingProxyType(dict(self.facts)))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: unset fields left out, ``checkpoints`` as ``{prefix, step}`` objects."""
        out: dict[str, Any] = {"format": self.format, "path": self.path}
        for key in ("layout", "step", "shards", "saved_model"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.checkpoints:
            out["checkpoints"] = [{"prefix": p, "step": s} for p, s in self.checkpoints]
        if self.facts:
            out["facts"] = dict(self.facts)
        return out


class Checkpoint(Mapping[str, Tensor]):
    """An ordered ``{name: Tensor}`` mapping plus ``metadata`` and ``source``.

    ``metadata`` holds the user's string pairs: what a file stored as its own metadata
    (safetensors ``__metadata__``, HDF5 root attributes ...) and what a caller added; writers
    store it where the format can. ``source`` is what the reader found out (format, layout,
    prefix, step, shards), or None for a checkpoint built in memory; writers never see it.

    Readers may keep files open for lazy reads; use the checkpoint as a context manager or call
    ``close()`` to release them early.
    """

    def __init__(
        self,
        tensors: Mapping[str, Tensor] | None = None,
        metadata: Mapping[str, str] | None = None,
        *,
        source: Source | None = None,
        closers: list[Callable[[], None]] | None = None,
    ) -> None:
        self._tensors: dict[str, Tensor] = dict(tensors or {})
        self.metadata: dict[str, str] = dict(metadata or {})
        self.source = source
        self._closers = closers or []

    def __getitem__(self, name: str) -> Tensor:
        return self._tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    # The dict's own views: Mapping's generic ones look every name up again.
    def keys(self) -> KeysView[str]:
        return self._tensors.keys()

    def values(self) -> ValuesView[Tensor]:
        return self._tensors.values()

    def items(self) -> ItemsView[str, Tensor]:
        return self._tensors.items()

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self._tensors.values())

    def close(self) -> None:
        for close in self._closers:
            close()
        self._closers = []

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Checkpoint({len(self)} tensors, metadata={self.metadata!r}, "
                f"source={self.source!r})")

    # Notebooks and IPython show the scope tree in small (converter.display), from the index
    # alone: no tensor is read.
    def _repr_html_(self) -> str:
        from . import display

        return display.html_view(self, self._heading())

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        from . import display

        display.pretty(p, self, self._heading(), cycle)

    def _heading(self) -> str:
        s = self.source
        if s is None:
            return "Checkpoint"
        return f"Checkpoint ({s.format}{', ' + s.layout if s.layout else ''}) {s.path}"


def as_checkpoint(obj: Checkpoint | Mapping[str, Any]) -> Checkpoint:
    """Accept a Checkpoint, or a mapping of names to arrays/Tensors, as a Checkpoint."""
    if isinstance(obj, Checkpoint):
        return obj
    if not isinstance(obj, Mapping):
        raise TypeError(f"expected a Checkpoint or a mapping of names to arrays, got {type(obj)}")
    tensors = {}
    for name, value in obj.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be str, got {name!r}")
        tensors[name] = value.renamed(name) if isinstance(value, Tensor) else Tensor.from_array(
            name, value
        )
    return Checkpoint(tensors)
