"""Read PyTorch `.pth` state dicts into NumPy arrays, without torch and without running code.

torch saves a state dict in one of two formats: the legacy one (pickles, then the raw
storages; torch < 1.6 and torchvision's published ImageNet files) and the zip one (a
`data.pkl` pickle and one file per storage). Both are pickles, and a pickle can call any
function it names: `torch.load` on an untrusted file runs its code.

A hostile file cannot hurt here. Every pickle goes through one unpickler, Python's own
with its opcodes narrowed to those torch writes: it builds dicts, lists, tuples and
plain values, calls only torch's tensor-rebuilding functions (and `OrderedDict()`),
sets no object's state, and numbers its memo in order; the legacy header pickles name
no global at all. Every tensor is checked against its storage (offsets, sizes and
strides non-negative and inside it, no more elements than it holds) and every storage
against the bytes the file has for it (a zip member's declared size, before anything is
inflated), before any array is made. The arrays made hold at most `MAX_COPIES` times the
storages' elements, nesting is bounded, and a dict shared through the memo is converted
once. So memory and time stay proportional to the file's size, and every failure is a
`PthError` naming the file.
"""
from __future__ import annotations

import collections
import io
import math
import os
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

# Bounds far above any real state dict (torchvision's files: nesting 2, 3 open MARKs,
# each storage read once): a file past one is refused, not half-read.
MAX_DEPTH = 100  # dicts, lists and tuples inside one another
MAX_MARKS = 64  # MARKs open at once in a pickle
MAX_NDIM = 32  # a tensor's dimensions (NumPy 1's limit)
MAX_COPIES = 8  # elements of the arrays made / elements of the storages (tied weights: 2)
MAX_INFLATION = 100  # a zip member's size / its compressed size (torch stores them: 1)
ZIP_MAGIC = b"PK\x03\x04"  # how torch.load tells its zip format from the legacy one


class PthError(ValueError):
    """A `.pth` file this reader refuses or cannot read; the message names the file."""


class _Refused(Exception):
    """Why a file is refused, in words; `read_state_dict` puts the file's name in front."""


class _StorageType:
    """Stands in for `torch.FloatStorage` and its kind: only its element type matters."""

    def __init__(self, name):
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class _Storage:
    """A storage named by the pickle: its element type and count, filled from the file's
    bytes once both are checked against them."""

    def __init__(self, dtype, numel):
        self.dtype, self.numel, self.data = dtype, numel, None

    @property
    def nbytes(self):
        return self.numel * self.dtype.itemsize


def _naturals(values):
    """`values` as a tuple if it is a short tuple or list of non-negative ints, else None."""
    if type(values) not in (tuple, list) or len(values) > MAX_NDIM:
        return None
    if not all(type(v) is int and v >= 0 for v in values):
        return None
    return tuple(values)


class _Tensor:
    """What `_rebuild_tensor_v2` describes: a strided view of a storage, checked against
    the storage's declared size when made, copied out of it once the file is read."""

    def __init__(self, storage, offset, size, stride):
        size, stride = _naturals(size), _naturals(stride)
        if (not isinstance(storage, _Storage) or type(offset) is not int or offset < 0
                or size is None or stride is None or len(size) != len(stride)):
            raise _Refused("a tensor that is not a storage with a non-negative offset and "
                           f"up to {MAX_NDIM} non-negative sizes and strides")
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride
        self.count = math.prod(size)
        numel = storage.numel
        if self.count > numel:  # a stride-0 broadcast of a huge shape, among others
            raise _Refused(f"a tensor of {self.count} elements in a storage of {numel}")
        if self.count:
            last = offset + sum((n - 1) * s for n, s in zip(size, stride))
            if last >= numel:
                raise _Refused(f"a tensor reaches element {last} of a storage of {numel}")
        elif offset > numel or max(size, default=0) >= 2**31:
            raise _Refused(f"an empty tensor of size {size} at offset {offset} of a storage "
                           f"of {numel}")

    def array(self):
        data = self.storage.data
        if not self.count:
            return np.zeros(self.size, data.dtype)
        # A dimension of size 1 never moves: its stride, which may be anything, is unused.
        strides = [s * data.dtype.itemsize if n > 1 else 0
                   for n, s in zip(self.size, self.stride)]
        view = np.lib.stride_tricks.as_strided(data[self.offset:], self.size, strides)
        return np.array(view)  # a copy: the storage's buffer is the file's


def _rebuild_tensor(storage, offset, size, stride, *_):
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, *_):
    if not isinstance(data, _Tensor):
        raise _Refused("a parameter that is not a tensor")
    return data


_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}
_CALLABLE = tuple(_GLOBALS.values())

# The opcodes of torch's pickles (protocol 2, or 4 when asked), and Python 2's strings.
_OPCODES = {getattr(pickle, name)[0] for name in (
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "NONE", "NEWTRUE", "NEWFALSE",
    "BININT", "BININT1", "BININT2", "LONG1", "BINFLOAT", "BINUNICODE", "SHORT_BINUNICODE",
    "BINSTRING", "SHORT_BINSTRING", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
    "EMPTY_LIST", "LIST", "APPEND", "APPENDS", "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS",
    "BINGET", "LONG_BINGET", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GLOBAL", "STACK_GLOBAL",
    "REDUCE", "BUILD", "BINPERSID")}


class _Dispatch(dict):
    """Opcode -> handler; an opcode torch does not write is refused, not run."""

    def __missing__(self, code):
        raise _Refused(f"pickle opcode 0x{code:02x}, which torch's pickles do not use")


def _expect(obj, types, what):
    if type(obj) not in types:
        raise _Refused(f"the pickle {what} a {type(obj).__name__}")
    return obj


def _key(key):
    """A dict key as state dicts have them (a name, or a number in optimizer states);
    anything else could be slow or deep to hash."""
    return _expect(key, (str, int), "keys a dict by")


class _Unpickler(pickle._Unpickler):
    """Python's own unpickler (the pure-Python one, whose every opcode can be narrowed),
    building only what a state dict holds.

    `storages` is the {key: `_Storage`} the pickle's storage references fill; None for
    the legacy header pickles, which may name no global and reference no storage.
    """

    dispatch = _Dispatch({code: handler for code, handler in pickle._Unpickler.dispatch.items()
                          if code in _OPCODES})

    def __init__(self, file, storages=None):
        super().__init__(file)
        self._storages, self.tensors = storages, []

    def find_class(self, module, name):
        if self._storages is not None:
            if (module, name) in _GLOBALS:
                return _GLOBALS[(module, name)]
            if module == "torch" and name in STORAGE_DTYPES:
                return _StorageType(name)
        raise _Refused(f"refused to load {_printable(module)}.{_printable(name)}, which a "
                       "PyTorch state dict does not hold (the file may run code when loaded "
                       "by torch); use a state dict saved with "
                       "torch.save(model.state_dict(), path).")

    def persistent_load(self, pid):
        if self._storages is None:
            raise _Refused("a storage reference in a header pickle")
        if not (type(pid) is tuple and len(pid) in (5, 6) and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and type(pid[2]) is str
                and type(pid[4]) is int and pid[4] >= 0 and (len(pid) == 5 or pid[5] is None)):
            raise _Refused("an object reference that is not one of torch's storages")
        key, dtype, numel = pid[2], pid[1].dtype, pid[4]
        storage = self._storages.setdefault(key, _Storage(dtype, numel))
        if (storage.dtype, storage.numel) != (dtype, numel):
            raise _Refused(f"storage {key!r:.40} named twice with different types or sizes")
        return storage

    def load_mark(self):
        if len(self.metastack) >= MAX_MARKS:
            raise _Refused(f"more than {MAX_MARKS} pickle MARKs open at once")
        super().load_mark()

    dispatch[pickle.MARK[0]] = load_mark

    def _put(self, index):
        # Python's pickler numbers the memo 0, 1, 2...: a far index is damage, or an
        # attack on unpicklers that size their memo table by it (2**27: 2 GB in C's).
        if index > len(self.memo):
            raise _Refused(f"memo index {index} out of order")
        self.memo[index] = self.stack[-1]

    def load_binput(self):
        self._put(self.read(1)[0])

    def load_long_binput(self):
        self._put(struct.unpack("<I", self.read(4))[0])

    dispatch[pickle.BINPUT[0]] = load_binput
    dispatch[pickle.LONG_BINPUT[0]] = load_long_binput

    def load_dict(self):
        items = self.pop_mark()
        self.append({_key(items[i]): items[i + 1] for i in range(0, len(items), 2)})

    def load_setitem(self):
        value, key = self.stack.pop(), self.stack.pop()
        _expect(self.stack[-1], (dict, collections.OrderedDict), "sets an item of")[
            _key(key)] = value

    def load_setitems(self):
        items = self.pop_mark()
        target = _expect(self.stack[-1], (dict, collections.OrderedDict), "sets items of")
        for i in range(0, len(items), 2):
            target[_key(items[i])] = items[i + 1]

    def load_append(self):
        value = self.stack.pop()
        _expect(self.stack[-1], (list,), "appends to").append(value)

    def load_appends(self):
        items = self.pop_mark()
        _expect(self.stack[-1], (list,), "appends to").extend(items)

    dispatch[pickle.DICT[0]] = load_dict
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.APPEND[0]] = load_append
    dispatch[pickle.APPENDS[0]] = load_appends

    def load_reduce(self):
        args, func = self.stack.pop(), self.stack[-1]
        if not any(func is f for f in _CALLABLE) or type(args) is not tuple:
            raise _Refused(f"the pickle calls a {type(func).__name__}, not one of torch's "
                           "tensor-rebuilding functions")
        if func is collections.OrderedDict and args:
            raise _Refused("an OrderedDict made from arguments (torch makes them empty)")
        self.stack[-1] = value = func(*args)
        if func is _rebuild_tensor:
            self.tensors.append(value)

    def load_build(self):
        state, target = self.stack.pop(), self.stack[-1]
        # torch's state dicts carry `_metadata` (module versions) this way: not needed, so
        # not set. Any other target is a whitelisted object being changed: refused.
        if type(target) is not collections.OrderedDict or type(state) is not dict:
            raise _Refused(f"the pickle sets the state of a {type(target).__name__} (only "
                           "torch's ordered dicts get one, a dict)")

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.BUILD[0]] = load_build


def _check_copies(tensors, storages):
    """Refuse a file whose tensors would copy its storages more than `MAX_COPIES` times
    (many views of one big storage): the storages' sizes are checked against the file by now."""
    made, held = sum(t.count for t in tensors), sum(s.numel for s in storages.values())
    if made > MAX_COPIES * max(held, 1):
        raise _Refused(f"its tensors hold {made} elements, {made / max(held, 1):.0f} times "
                       "the elements its storages have")


def _arrays(obj):
    """The state dict with every tensor read into a NumPy array (nested dicts kept).

    Each object is converted once, however often the pickle's memo shares it; nesting
    deeper than `MAX_DEPTH`, an object inside itself and anything that is not a dict,
    list, tuple, tensor or plain value are refused.
    """
    done, open_ = {}, set()

    def convert(obj, depth):
        if obj is None or type(obj) in (str, int, float, bool):
            return obj
        if id(obj) in done:
            return done[id(obj)]
        if depth > MAX_DEPTH:
            raise _Refused(f"dicts or lists nested more than {MAX_DEPTH} deep")
        if id(obj) in open_:
            raise _Refused(f"a {type(obj).__name__} that holds itself")
        open_.add(id(obj))
        if isinstance(obj, _Tensor):
            out = obj.array()
        elif type(obj) in (dict, collections.OrderedDict):
            out = collections.OrderedDict((k, convert(v, depth + 1)) for k, v in obj.items())
        elif type(obj) in (list, tuple):
            out = type(obj)(convert(v, depth + 1) for v in obj)
        else:
            raise _Refused(f"holds a {type(obj).__name__}, which a state dict does not")
        open_.discard(id(obj))
        done[id(obj)] = out
        return out

    return convert(obj, 0)


def _read_legacy(data):
    """The legacy format: magic number, version, sys_info, the state, its storage keys
    (five pickles), then each storage's element count and raw bytes."""
    f = io.BytesIO(data)
    try:
        magic = _Unpickler(f).load()
    except Exception:  # noqa: BLE001 (any file that does not start as torch's does)
        magic = None
    if type(magic) is not int or magic != LEGACY_MAGIC:
        raise _Refused("not a PyTorch file (no torch magic number at its start)")
    protocol = _Unpickler(f).load()
    if type(protocol) is not int or protocol != LEGACY_PROTOCOL:
        shown = protocol if type(protocol) is int else f"a {type(protocol).__name__}"
        raise _Refused(f"unsupported legacy PyTorch format version ({shown})")
    sys_info = _Unpickler(f).load()  # byte order, type sizes
    if type(sys_info) is not dict:
        raise _Refused(f"its sys_info header is a {type(sys_info).__name__}, not a dict")
    if not sys_info.get("little_endian", True):
        raise _Refused("saved on a big-endian machine, which this reader does not read")
    storages = {}
    unpickler = _Unpickler(f, storages)
    result = unpickler.load()
    keys = _Unpickler(f).load()
    if (type(keys) is not list or not all(type(k) is str for k in keys)
            or sorted(keys) != sorted(storages)):
        raise _Refused("the storages listed after the state are not those it names")
    pos = f.tell()
    for key in keys:
        storage = storages[key]
        if pos + 8 > len(data):
            raise _Refused(f"the file is truncated (storage {key!r:.40} is cut short)")
        (numel,) = struct.unpack_from("<q", data, pos)
        if numel != storage.numel:
            raise _Refused(f"storage {key!r:.40} holds {numel} elements where its tensors "
                           f"were told {storage.numel}")
        pos += 8
        if pos + storage.nbytes > len(data):
            raise _Refused(f"the file is truncated (storage {key!r:.40} is cut short)")
        storage.data = np.frombuffer(data, storage.dtype, count=numel, offset=pos)
        pos += storage.nbytes
    _check_copies(unpickler.tensors, storages)
    return result


def _member(archive, info, file_size):
    """The bytes of the archive's member `info`, inflated only if they lie within the
    file and inflate at most `MAX_INFLATION` times (a zip bomb is refused unread)."""
    if info.flag_bits & 0x1:
        raise _Refused(f"member {info.filename!r:.60} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _Refused(f"member {info.filename!r:.60} is compressed in a way torch does not")
    if info.header_offset + info.compress_size > file_size:
        raise _Refused(f"member {info.filename!r:.60} claims more bytes than the file has")
    if info.file_size > MAX_INFLATION * max(info.compress_size, 1):
        raise _Refused(f"member {info.filename!r:.60} inflates {info.compress_size} bytes to "
                       f"{info.file_size} (torch stores its members uncompressed)")
    return archive.read(info)


def _read_zip(path):
    """The zip format: `<root>/data.pkl` (the state), `<root>/data/<key>` (each storage)."""
    file_size = os.path.getsize(path)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        pkl = min((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), default=None)
        if pkl is None:
            raise _Refused("a zip file without the data.pkl of a PyTorch state dict")
        root = pkl[:-len("data.pkl")]
        if f"{root}byteorder" in names and _member(
                archive, archive.getinfo(f"{root}byteorder"), file_size) != b"little":
            raise _Refused("saved big-endian, which this reader does not read")
        storages = {}
        unpickler = _Unpickler(io.BytesIO(_member(archive, archive.getinfo(pkl), file_size)),
                               storages)
        result = unpickler.load()
        infos = {}
        for key, storage in storages.items():  # every size checked before any is inflated
            name = f"{root}data/{key}"
            if name not in names:
                raise _Refused(f"storage {key!r:.40} is missing from the archive")
            infos[key] = archive.getinfo(name)
            if infos[key].file_size != storage.nbytes:
                raise _Refused(f"storage {key!r:.40} is {infos[key].file_size} bytes where its "
                               f"tensors need {storage.nbytes}")
        _check_copies(unpickler.tensors, storages)
        for key, storage in storages.items():
            storage.data = np.frombuffer(_member(archive, infos[key], file_size), storage.dtype,
                                         count=storage.numel)
    return result


def _printable(text, limit=60):
    """`text` cut to `limit` characters, each one that would not print as itself a "?"
    (names read from a damaged file hold anything)."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _one_line(err):
    try:
        return _printable(" ".join(str(err).split()), 120)
    except Exception:  # noqa: BLE001 (a message that cannot be printed is left out)
        return ""


def read_state_dict(path):
    """The state dict saved at `path` as an `OrderedDict` of NumPy arrays.

    Reads both of torch's formats (legacy and zip); refuses any pickled object other
    than dicts and tensors, so loading an untrusted file cannot run code, and any file
    whose tensors do not fit its storages, so it cannot make huge arrays either.
    Raises `PthError` (a `ValueError`) naming the file when it cannot be read, whatever
    the reason (a damaged file's MemoryError or RecursionError included).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            zipped = f.read(len(ZIP_MAGIC)) == ZIP_MAGIC
            f.seek(0)
            data = None if zipped else f.read()  # the storages are views of it
        state = _arrays(_read_zip(path) if zipped else _read_legacy(data))
    except _Refused as err:
        raise PthError(f"{path}: {err}") from None
    except Exception as err:  # noqa: BLE001 (a damaged file can raise anything; say which)
        raise PthError(f"{path}: not a readable PyTorch state dict ({type(err).__name__}: "
                       f"{_one_line(err)})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # training checkpoints wrap it
    if not isinstance(state, dict):
        raise PthError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state
