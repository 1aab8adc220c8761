"""Read PyTorch `.pth` state dicts into NumPy arrays, without torch and without running code.

torch saves a state dict in one of two formats: the legacy one (pickles, then the raw
storages; torch < 1.6 and torchvision's published ImageNet files) and the zip one (a
`data.pkl` pickle and one file per storage). Both are pickles, and a pickle can call any
function it names: `torch.load` on an untrusted file runs its code. This reader unpickles
with a whitelist (ordered dicts, torch's tensor-rebuilding functions and storage types),
so a crafted file raises `PthError` instead of running anything.
"""
from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile

import numpy as np

# The legacy format's first pickle (torch/serialization.py's MAGIC_NUMBER) and version.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch storage type -> NumPy dtype (little-endian, as torch writes them).
STORAGE_DTYPES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2", "LongStorage": "<i8",
    "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?",
}


class PthError(ValueError):
    """A `.pth` file this reader refuses or cannot read; the message names the file."""


class _StorageType:
    """Stands in for `torch.FloatStorage` and its kind: only its element type matters."""

    def __init__(self, name):
        self.name, self.dtype = name, np.dtype(STORAGE_DTYPES[name])


class _Storage:
    """A storage named by the pickle, filled from the file's raw bytes afterwards."""

    def __init__(self, dtype, numel):
        self.dtype, self.numel, self.data = dtype, numel, None


class _Tensor:
    """What `_rebuild_tensor_v2` describes: a strided view of a storage, made once read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self):
        data = self.storage.data
        itemsize = data.dtype.itemsize
        if self.size and max(
                self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride)) + 1,
                0) > data.size:
            raise ValueError("a tensor reaches past the end of its storage")
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.size, strides=[s * itemsize for s in self.stride])
        return np.array(view)  # a copy: the storage's buffer may be shared


def _rebuild_tensor(storage, offset, size, stride, *_):
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, *_):
    return data


_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    """Builds only ordered dicts, tensors and storage types; any other global is refused."""

    def __init__(self, file, path, storages, load_storage):
        super().__init__(file)
        self._path, self._storages, self._load_storage = path, storages, load_storage

    def find_class(self, module, name):
        if (module, name) in _GLOBALS:
            return _GLOBALS[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise PthError(f"{self._path}: refused to load {module}.{name}, which a PyTorch state "
                       "dict does not hold (the file may run code when loaded by torch); use "
                       "a state dict saved with torch.save(model.state_dict(), path).")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise PthError(f"{self._path}: unexpected object reference {pid!r:.80} in the pickle")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if key not in self._storages:
            self._storages[key] = self._load_storage(key, storage_type.dtype, numel)
        return self._storages[key]


def _arrays(obj):
    """The state dict with every tensor read into a NumPy array (nested dicts kept)."""
    if isinstance(obj, _Tensor):
        return obj.array()
    if isinstance(obj, dict):
        return collections.OrderedDict((k, _arrays(v)) for k, v in obj.items())
    return obj


def _read_legacy(f, path):
    magic = pickle.load(f)
    if magic != LEGACY_MAGIC:
        raise PthError(f"{path}: not a PyTorch file (no torch magic number at its start)")
    protocol = pickle.load(f)
    if protocol != LEGACY_PROTOCOL:
        raise PthError(f"{path}: unsupported legacy PyTorch format version {protocol}")
    sys_info = pickle.load(f)  # plain dict: byte order, type sizes
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise PthError(f"{path}: saved on a big-endian machine, which this reader does not read")
    storages = {}
    result = _Unpickler(f, path, storages,
                        lambda key, dtype, numel: _Storage(dtype, numel)).load()
    keys = _Unpickler(f, path, storages, None).load()
    for key in keys:
        storage = storages[str(key)]
        (numel,) = struct.unpack("<q", f.read(8))
        raw = f.read(numel * storage.dtype.itemsize)
        if len(raw) != numel * storage.dtype.itemsize:
            raise PthError(f"{path}: the file is truncated (storage {key} is cut short)")
        storage.data = np.frombuffer(raw, storage.dtype)
    return result


def _read_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise PthError(f"{path}: a zip file without the data.pkl of a PyTorch state dict")
        root = pkl[:-len("data.pkl")]
        if f"{root}byteorder" in names and archive.read(f"{root}byteorder") != b"little":
            raise PthError(f"{path}: saved big-endian, which this reader does not read")

        def load_storage(key, dtype, numel):
            try:
                raw = archive.read(f"{root}data/{key}")
            except KeyError:
                raise PthError(f"{path}: storage {key} is missing from the archive") from None
            storage = _Storage(dtype, numel)
            storage.data = np.frombuffer(raw, dtype, count=numel)
            return storage

        return _Unpickler(io.BytesIO(archive.read(pkl)), path, {}, load_storage).load()


def read_state_dict(path):
    """The state dict saved at `path` as an `OrderedDict` of NumPy arrays.

    Reads both of torch's formats (legacy and zip); refuses any pickled object other
    than dicts and tensors, so loading an untrusted file cannot run code.
    Raises `PthError` (a `ValueError`) naming the file when it cannot be read.
    """
    path = str(path)
    try:
        if zipfile.is_zipfile(path):
            result = _read_zip(path)
        else:
            with open(path, "rb") as f:
                result = _read_legacy(f, path)
        state = _arrays(result)
    except PthError:
        raise
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError, KeyError, TypeError,
            AttributeError, IndexError, zipfile.BadZipFile) as err:
        raise PthError(f"{path}: not a readable PyTorch state dict ({type(err).__name__}: "
                       f"{str(err)[:120]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # training checkpoints wrap it
    if not isinstance(state, dict):
        raise PthError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state
