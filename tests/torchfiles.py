"""PyTorch files and torchvision's MobileNetV2, written and run without torch.

`write_legacy` and `write_zip` save a state dict of NumPy arrays in torch's two formats,
byte for byte as `torch.save` lays them out (a pickle naming torch's own functions, the
storages apart), so the reader is tested on files the tests make; `legacy_bytes` and
`zip_bytes` lay out pickles and storages given as bytes, for files crafted by hand, and
`fuzz` reads damaged copies of files (`mutants`). `torchvision_state`
makes a random state dict with torchvision MobileNetV2's names and shapes, and
`torchvision_forward` runs it in NumPy by torchvision's rules (its own module names,
symmetric padding, BatchNorm epsilon 1e-5): the reference the Keras variant must match.
"""
import collections
import io
import os
import pickle
import struct
import time
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_NAMES = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage",
                  np.dtype("float64"): "DoubleStorage"}


class Global:
    """A global as a pickle names it (`module.name`), with nothing imported."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle wants a callable; only its name is written
        raise TypeError(f"{self.module}.{self.name} is only named here")


class _Storage:
    def __init__(self, key, array):
        self.key, self.array = key, np.array(array, order="C").ravel()


class _Tensor:
    """Pickles as torch does: `_rebuild_tensor_v2(storage, offset, size, stride, ...)`."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        return (Global("torch._utils", "_rebuild_tensor_v2"),
                (self.storage, self.offset, tuple(self.size), tuple(self.stride), False,
                 collections.OrderedDict()))


class Pickler(pickle._Pickler):
    """Python's pickler, writing `Global`s by name and storages as persistent ids."""

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file, legacy):
        super().__init__(file, protocol=2)
        self.legacy = legacy

    def save_named(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[Global] = save_named

    def persistent_id(self, obj):
        if not isinstance(obj, _Storage):
            return None
        kind = Global("torch", _STORAGE_NAMES[obj.array.dtype])
        pid = ("storage", kind, obj.key, "cpu", obj.array.size)
        return pid + (None,) if self.legacy else pid


def _tensors(state):
    """(state dict of `_Tensor`s, storages in order); a transposed array keeps its strides.

    The dict carries `_metadata` (module versions), as `module.state_dict()` makes it, so
    its pickle sets that state with a BUILD, as torch's files do.
    """
    storages, out = [], collections.OrderedDict()
    out._metadata = collections.OrderedDict([("", {"version": 1})])
    for name, value in state.items():
        array = np.asarray(value)
        if array.ndim == 2 and name.startswith("transposed"):
            base = _Storage(str(len(storages)), array.T)  # a view, as `t()` saves it
            out[name] = _Tensor(base, 0, array.shape, (1, array.shape[0]))
        else:
            base = _Storage(str(len(storages)), array)
            out[name] = _Tensor(base, 0, array.shape,
                                tuple(s // array.itemsize for s in
                                      np.array(array, order="C").strides))
        storages.append(base)
    return out, storages


def _dump(obj, legacy):
    buffer = io.BytesIO()
    Pickler(buffer, legacy).dump(obj)
    return buffer.getvalue()


def legacy_bytes(state_pickle, storages, headers=None):
    """A legacy file: three header pickles (magic number, version, sys_info), the state
    pickle, the pickled list of storage keys, then each storage's element count and bytes.

    `storages` is [(key, element count, raw bytes)]; `headers` replaces the pickled
    headers (a list of three pickles' bytes)."""
    if headers is None:
        headers = [pickle.dumps(h, protocol=2) for h in
                   (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True})]
    out = b"".join(headers) + state_pickle + pickle.dumps([k for k, _, _ in storages], 2)
    return out + b"".join(struct.pack("<q", n) + raw for _, n, raw in storages)


def zip_bytes(data_pkl, storages, root="archive", compression=zipfile.ZIP_STORED):
    """A zip file as torch writes it: `root/data.pkl`, `root/byteorder`, one member per
    storage (`storages`: [(key, raw bytes)]), `root/version`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        archive.writestr(f"{root}/data.pkl", data_pkl)
        archive.writestr(f"{root}/byteorder", "little")
        for key, raw in storages:
            archive.writestr(f"{root}/data/{key}", raw)
        archive.writestr(f"{root}/version", "3\n")
    return buffer.getvalue()


def _little(array):
    return array.astype(array.dtype.newbyteorder("<")).tobytes()


def write_legacy(path, state):
    """`torch.save(state, path, _use_new_zipfile_serialization=False)`'s layout."""
    tensors, storages = _tensors(state)
    with open(path, "wb") as f:
        f.write(legacy_bytes(_dump(tensors, legacy=True),
                             [(s.key, s.array.size, _little(s.array)) for s in storages]))


def write_zip(path, state, root="archive"):
    """`torch.save(state, path)`'s layout (the zip format of torch 1.6 and later)."""
    tensors, storages = _tensors(state)
    with open(path, "wb") as f:
        f.write(zip_bytes(_dump(tensors, legacy=False),
                          [(s.key, _little(s.array)) for s in storages], root))


def small_state():
    """A few tensors of each kind the reader meets: 4-D, a transposed view, float64, a scalar."""
    rng = np.random.default_rng(3)
    return collections.OrderedDict([
        ("conv.weight", rng.normal(size=(4, 3, 3, 3)).astype("float32")),
        ("transposed.weight", rng.normal(size=(5, 7)).astype("float32")),  # strided view
        ("bn.running_var", rng.uniform(size=6).astype("float64")),
        ("bn.num_batches_tracked", np.array(17, "int64")),
    ])


def set_zip_flag(data, bit):
    """A zip's bytes with general-purpose flag `bit` set on every member, in its local and
    central headers (bit 6, strong encryption, makes `zipfile` raise NotImplementedError)."""
    data = bytearray(data)
    for signature, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = data.find(signature)
        while start >= 0:
            data[start + at] |= 1 << bit
            start = data.find(signature, start + 1)
    return bytes(data)


def mutants(data, rng, zipped_pickle=None):
    """One damaged copy of a file's bytes: 1 to 4 bytes set at random (half the time in
    its first 64 KB, where the pickles are), or the file cut at a random length; for a
    zip (`zipped_pickle`: its data.pkl and storages), sometimes its pickle damaged so
    and zipped again, so that the damage passes the CRCs. Returns (how, bytes)."""
    kind = rng.integers(3 if zipped_pickle else 2)
    if kind == 1:
        return "truncated", data[:rng.integers(len(data))]
    if kind == 2:
        pkl, storages = zipped_pickle
        return "its pickle damaged, zipped again", zip_bytes(mutants(pkl, rng)[1], storages)
    out = bytearray(data)
    reach = len(out) if rng.integers(2) else min(len(out), 1 << 16)
    for at in rng.integers(reach, size=rng.integers(1, 5)):
        out[at] = rng.integers(256)
    return "bytes changed", bytes(out)


def fuzz(read, refusal, paths, cases, seed, folder):
    """Read `cases` damaged copies (`mutants`, seeded) of the files at `paths` with
    `read`, each written to `folder` first; a zip's pickle is damaged inside it too.

    Returns [(file name, how damaged, outcome, seconds)], the outcome "loaded" or the
    message of the `refusal` (an exception type) raised; any other exception is raised.
    """
    rng = np.random.default_rng(seed)
    sources = []
    for path in paths:
        data, zipped = open(path, "rb").read(), None
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                zipped = (archive.read("archive/data.pkl"),
                          [(n.rsplit("/", 1)[1], archive.read(n)) for n in names
                           if n.startswith("archive/data/")])
        sources.append((os.path.basename(path), data, zipped))
    results = []
    for case in range(cases):
        name, data, zipped = sources[case % len(sources)]
        how, damaged = mutants(data, rng, zipped)
        target = os.path.join(folder, f"{case % 2}_{name}")
        with open(target, "wb") as f:
            f.write(damaged)
        start = time.perf_counter()
        try:
            read(target)
            outcome = "loaded"
        except refusal as err:
            outcome = str(err)
        results.append((name, how, outcome, time.perf_counter() - start))
    return results


# torchvision's MobileNetV2: (expansion t, channels c, repeats n, first stride s).
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
             (6, 160, 3, 2), (6, 320, 1, 1))


def _blocks():
    """(features index, in channels, expansion, out channels, stride) of each block."""
    blocks, in_c, index = [], 32, 1
    for t, c, n, s in _SETTINGS:
        for i in range(n):
            blocks.append((index, in_c, t, c, s if i == 0 else 1))
            in_c, index = c, index + 1
    return blocks


def torchvision_state(seed=0, classes=1000):
    """A random state dict with torchvision MobileNetV2's names, shapes and order.

    BatchNorm variances include tiny ones (as the real file has, down to 1e-45), so
    an epsilon other than torch's 1e-5 shows; the network is well conditioned (a 1e-5
    change of the input moves the logits by far less than the tolerance), so float32
    and float64 agree.
    """
    rng = np.random.default_rng(seed)
    state = collections.OrderedDict()

    def conv(name, out_c, in_c, k):
        std = np.sqrt(2.0 / (in_c * k * k))
        state[f"{name}.weight"] = rng.normal(0, std, (out_c, in_c, k, k)).astype("float32")

    def bn(name, c):
        gamma, var = rng.uniform(0.5, 1.5, c), rng.uniform(0.5, 1.5, c)
        # Tiny variances with a small gamma: a gain near 1 under torch's epsilon (so the
        # network stays well conditioned), a third of it under Keras' 1e-3.
        tiny = rng.random(c) < 0.3
        var[tiny], gamma[tiny] = 1e-4, rng.uniform(0.005, 0.015, tiny.sum())
        state[f"{name}.weight"] = gamma.astype("float32")
        state[f"{name}.bias"] = rng.normal(0, 0.1, c).astype("float32")
        state[f"{name}.running_mean"] = rng.normal(0, 0.1, c).astype("float32")
        state[f"{name}.running_var"] = var.astype("float32")
        state[f"{name}.num_batches_tracked"] = np.array(1000, "int64")

    conv("features.0.0", 32, 3, 3)
    bn("features.0.1", 32)
    for index, in_c, t, out_c, _ in _blocks():
        prefix, hidden, layer = f"features.{index}.conv", in_c * t, 0
        if t != 1:
            conv(f"{prefix}.0.0", hidden, in_c, 1)
            bn(f"{prefix}.0.1", hidden)
            layer = 1
        conv(f"{prefix}.{layer}.0", hidden, 1, 3)
        bn(f"{prefix}.{layer}.1", hidden)
        conv(f"{prefix}.{layer + 1}", out_c, hidden, 1)
        bn(f"{prefix}.{layer + 2}", out_c)
    conv("features.18.0", 1280, 320, 1)
    bn("features.18.1", 1280)
    state["classifier.1.weight"] = rng.normal(0, 0.03, (classes, 1280)).astype("float32")
    state["classifier.1.bias"] = rng.normal(0, 0.1, classes).astype("float32")
    return state


def _conv(x, w, stride=1, groups=1):
    """torch's Conv2d on NHWC `x`, weight (out, in/groups, k, k), padding (k - 1) / 2 on
    every side (as torchvision's 3x3 and 1x1 convolutions)."""
    k = w.shape[-1]
    pad = (k - 1) // 2
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    n, h, wd, c = x.shape
    ho, wo = (h - k) // stride + 1, (wd - k) // stride + 1
    sn, sh, sw, sc = x.strides
    windows = np.lib.stride_tricks.as_strided(
        x, (n, ho, wo, k, k, c), (sn, sh * stride, sw * stride, sh, sw, sc))
    if groups == 1:
        return np.tensordot(windows, w.transpose(2, 3, 1, 0), axes=([3, 4, 5], [0, 1, 2]))
    return np.einsum("nhwijc,cij->nhwc", windows, w[:, 0])


def _bn(x, state, name):
    scale = state[f"{name}.weight"] / np.sqrt(state[f"{name}.running_var"] + 1e-5)
    return (x - state[f"{name}.running_mean"]) * scale + state[f"{name}.bias"]


def _relu6(x):
    return np.clip(x, 0, 6)


def torchvision_forward(state, x):
    """Logits of torchvision's MobileNetV2 (eval mode) for NHWC `x`, preprocessed already."""
    state = {k: v.astype("float64") for k, v in state.items()}
    x = _relu6(_bn(_conv(x.astype("float64"), state["features.0.0.weight"], 2), state,
                   "features.0.1"))
    for index, in_c, t, out_c, stride in _blocks():
        prefix, y, layer = f"features.{index}.conv", x, 0
        if t != 1:
            y = _relu6(_bn(_conv(y, state[f"{prefix}.0.0.weight"]), state, f"{prefix}.0.1"))
            layer = 1
        w = state[f"{prefix}.{layer}.0.weight"]
        y = _relu6(_bn(_conv(y, w, stride, groups=w.shape[0]), state, f"{prefix}.{layer}.1"))
        y = _bn(_conv(y, state[f"{prefix}.{layer + 1}.weight"]), state, f"{prefix}.{layer + 2}")
        x = x + y if stride == 1 and in_c == out_c else y
    x = _relu6(_bn(_conv(x, state["features.18.0.weight"]), state, "features.18.1"))
    features = x.mean(axis=(1, 2))
    return features @ state["classifier.1.weight"].T + state["classifier.1.bias"]
