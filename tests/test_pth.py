"""`kapps.pth` on hostile files: a `.pth` can neither run code, nor read outside its
storages, nor make huge arrays or spend minutes from a few bytes, nor fail with anything
but a one-line `PthError` naming the file (issue 29).

Each attack is written as an attacker writes it: the pickle's opcodes put together by
hand (`state` below), laid out as torch lays out its files (`tests/torchfiles.py`), no
torch. Its negative twin, the same file made honest, loads with the right values.
"""
import collections
import io
import pickle
import struct
import time
import zipfile

import numpy as np
import pytest

from kapps import pth, torchvision_weights
from torchfiles import (Global, Pickler, fuzz, legacy_bytes, set_zip_flag, small_state,
                        write_legacy, write_zip, zip_bytes)

WRITERS = {"legacy": write_legacy, "zip": write_zip}
FORMATS = tuple(WRITERS)
FOUR = np.array([1, 2, 3, 4], "<f4")  # the one storage of the hand-made files


# --- pickle opcodes, put together by hand -------------------------------------------------

def op_int(n):
    if 0 <= n < 256:
        return pickle.BININT1 + bytes([n])
    if -2**31 <= n < 2**31:
        return pickle.BININT + struct.pack("<i", n)
    encoded = pickle.encode_long(n)
    return pickle.LONG1 + bytes([len(encoded)]) + encoded


def op_str(text):
    raw = text.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw


def op_global(module, name):
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def op_tuple(*parts):
    return pickle.MARK + b"".join(parts) + pickle.TUPLE


def op_call(function, *args):
    """`function(*args)`: GLOBAL, a tuple of the arguments, REDUCE."""
    return op_global(*function.split(":")) + op_tuple(*args) + pickle.REDUCE


def op_storage(legacy, numel=4, kind=None):
    """torch's reference to storage "0" (a persistent id); `kind` replaces the GLOBAL
    naming its type."""
    kind = kind or op_global("torch", "FloatStorage")
    return op_tuple(op_str("storage"), kind, op_str("0"), op_str("cpu"), op_int(numel),
                    pickle.NONE if legacy else b"") + pickle.BINPERSID


def op_tensor(legacy, offset=0, size=(4,), stride=(1,), storage=None):
    """`_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`."""
    return op_call("torch._utils:_rebuild_tensor_v2", storage or op_storage(legacy),
                   op_int(offset), op_tuple(*map(op_int, size)), op_tuple(*map(op_int, stride)),
                   pickle.NEWFALSE, op_call("collections:OrderedDict"))


def op_put(index):
    return pickle.LONG_BINPUT + struct.pack("<I", index)


def op_get(index):
    return pickle.LONG_BINGET + struct.pack("<I", index)


def op_nested(depth, container):
    """{"a": c1}, c1 holding c2, ... `depth` deep, each a "dict" ({"a": child}) or a
    "list" ([child]): each child is memoized and fetched back to be filled in turn."""
    body = pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + op_put(0)
    for level in range(1, depth + 1):
        in_dict = level == 1 or container == "dict"
        body += ((op_str("a") if in_dict else b"")
                 + (pickle.EMPTY_DICT if container == "dict" else pickle.EMPTY_LIST)
                 + op_put(level) + (pickle.SETITEM if in_dict else pickle.APPEND)
                 + op_get(level))
    return body + op_get(0) + pickle.STOP


def state(*items):
    """The pickle of a dict {key: value}, values given as opcodes."""
    return (pickle.PROTO + b"\x02" + pickle.EMPTY_DICT
            + b"".join(op_str(k) + v + pickle.SETITEM for k, v in items) + pickle.STOP)


def write(path, kind, state_pickle, storage=FOUR.tobytes()):
    """A file of format `kind` (legacy or zip) holding `state_pickle` and, unless None,
    the float32 storage "0"."""
    if kind == "legacy":
        data = legacy_bytes(state_pickle, [("0", len(storage) // 4, storage)]
                            if storage is not None else [])
    else:
        data = zip_bytes(state_pickle, [("0", storage)] if storage is not None else [])
    path.write_bytes(data)
    return path


def refused(path, match):
    """The `PthError` reading `path` raises: it matches `match`, names the file and is one line."""
    with pytest.raises(pth.PthError, match=match) as err:
        pth.read_state_dict(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and message.isprintable()
    return message


# --- honest files ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", FORMATS)
def test_both_torch_formats_read_as_numpy_in_file_order(tmp_path, kind):
    state_dict = small_state()
    path = tmp_path / f"{kind}.pth"
    WRITERS[kind](path, state_dict)
    read = pth.read_state_dict(path)
    assert list(read) == list(state_dict)
    for name, value in state_dict.items():
        assert read[name].dtype == value.dtype and read[name].shape == value.shape
        np.testing.assert_array_equal(read[name], value)
        assert read[name].flags.writeable  # a copy, not a view of the file's bytes


@pytest.mark.skipif(torchvision_weights.package_file() is None,
                    reason=f"needs torchvision's real weights ({torchvision_weights.INSTALL})")
def test_torchvisions_real_file_reads_quickly():
    start = time.perf_counter()
    read = pth.read_state_dict(torchvision_weights.package_file())
    assert time.perf_counter() - start < 2
    assert len(read) == 314 and read["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert read["classifier.1.weight"].dtype == np.float32


@pytest.mark.parametrize("kind", FORMATS)
def test_the_hand_made_file_loads_with_its_values(tmp_path, kind):
    """The twin every attack below starts from: one tensor over four floats."""
    read = pth.read_state_dict(write(tmp_path / "w.pth", kind, state(("w", op_tensor(
        kind == "legacy")))))
    np.testing.assert_array_equal(read["w"], FOUR)


# --- code execution ----------------------------------------------------------------------

class RunsCode:
    """What an attacker pickles: `os.system(command)` called while loading."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return Global("os", "system"), (self.command,)


def runs_code(obj, legacy):
    """The pickle of `obj`, its `RunsCode` calls written as `os.system(...)`."""
    buffer = io.BytesIO()
    Pickler(buffer, legacy).dump(obj)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", FORMATS)
def test_a_state_that_would_run_code_is_refused_and_runs_nothing(tmp_path, kind):
    marker = tmp_path / "ran"
    evil = runs_code(collections.OrderedDict(weight=RunsCode(f"touch {marker}")),
                     kind == "legacy")
    path = write(tmp_path / f"evil_{kind}.pth", kind, evil, storage=None)
    refused(path, r"refused to load os\.system")
    assert not marker.exists()


@pytest.mark.parametrize("which", ["magic number", "version", "sys_info", "storage keys"])
def test_a_legacy_header_pickle_that_would_run_code_runs_nothing(tmp_path, which):
    """The pickles around the state (three headers, the list of storage keys) admit no
    global at all: they were read with plain `pickle.load`, and sys_info's ran `os.system`."""
    marker = tmp_path / "ran"
    pickles = [pickle.dumps(h, protocol=2) for h in (
        pth.LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True})]
    pickles += [state(("w", op_tensor(True))), pickle.dumps(["0"], protocol=2)]
    at = ["magic number", "version", "sys_info", None, "storage keys"].index(which)
    pickles[at] = runs_code(RunsCode(f"touch {marker}"), legacy=True)
    path = tmp_path / "evil.pth"
    path.write_bytes(b"".join(pickles) + struct.pack("<q", 4) + FOUR.tobytes())
    refused(path, "not a PyTorch file" if at == 0 else r"refused to load os\.system")
    assert not marker.exists()


# --- reads outside the storage --------------------------------------------------------

@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("offset, size, stride, why", [
    (0, (4,), (-1,), "stride -1: the three floats before the storage"),
    (0, (10**6,), (-1,), "stride -1, a million long: segfaulted"),
    (-2, (4,), (1,), "a negative offset: two floats past the end"),
    (4, (), (), "a scalar just past the end"),
    (0, (5,), (1,), "one element too many"),
    (1, (2, 2), (2, 1), "a 2-D view ending one past the end"),
])
def test_a_tensor_outside_its_storage_is_refused(tmp_path, kind, offset, size, stride, why):
    path = write(tmp_path / "out.pth", kind, state(("w", op_tensor(
        kind == "legacy", offset, size, stride))))
    refused(path, "tensor")


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("offset, size, stride, expected", [
    (3, (), (), 4.0),  # the last element as a scalar
    (0, (2, 2), (1, 2), [[1, 3], [2, 4]]),  # a transposed view
    (1, (1, 3), (99, 1), [[2, 3, 4]]),  # a size-1 dimension's stride is never used
    (2, (0, 7), (7, 1), np.zeros((0, 7))),  # an empty tensor
])
def test_views_inside_the_storage_still_read(tmp_path, kind, offset, size, stride, expected):
    """The twin: each view torch makes, at the storage's edge, reads its elements."""
    path = write(tmp_path / "in.pth", kind, state(("w", op_tensor(
        kind == "legacy", offset, size, stride))))
    np.testing.assert_array_equal(pth.read_state_dict(path)["w"], expected)


# --- tiny files that would take memory or time -------------------------------------------

@pytest.mark.parametrize("kind", FORMATS)
def test_a_stride_0_tensor_of_a_huge_shape_is_refused(tmp_path, kind):
    """20000 x 20000 floats over one (693 bytes made 1.55 GB)."""
    huge = write(tmp_path / "huge.pth", kind, state(("w", op_tensor(
        kind == "legacy", 0, (20000, 20000), (0, 0)))))
    assert huge.stat().st_size < 1000
    refused(huge, "400000000 elements in a storage of 4")
    small = write(tmp_path / "small.pth", kind, state(("w", op_tensor(
        kind == "legacy", 0, (2, 2), (0, 1)))))
    np.testing.assert_array_equal(pth.read_state_dict(small)["w"], [[1, 2], [1, 2]])


@pytest.mark.parametrize("kind", FORMATS)
def test_many_views_of_one_storage_are_refused_past_a_few_copies(tmp_path, kind):
    """Each view fits, but 100 of them would copy the storage 100 times."""
    legacy = kind == "legacy"
    views = [(f"w{i}", op_tensor(legacy)) for i in range(100)]
    refused(write(tmp_path / "views.pth", kind, state(*views)), "100 times")
    tied = pth.read_state_dict(write(tmp_path / "tied.pth", kind, state(*views[:2])))
    np.testing.assert_array_equal(tied["w1"], FOUR)  # tied weights: two views of one


@pytest.mark.parametrize("kind", FORMATS)
def test_a_dict_shared_through_the_memo_is_converted_once(tmp_path, kind):
    """d1 = {a: d0, b: d0}, d2 = {a: d1, b: d1}... 60 levels: 2**60 paths in 2 KB (it
    took minutes, converting the same dict again and again)."""
    legacy, levels = kind == "legacy", 60
    body = state(("w", op_tensor(legacy)))[:-1] + op_put(0)
    for level in range(1, levels + 1):
        below = op_get(level - 1)
        body += (pickle.EMPTY_DICT + op_str("a") + below + pickle.SETITEM + op_str("b")
                 + below + pickle.SETITEM + op_put(level))
    path = write(tmp_path / "shared.pth", kind, body + pickle.STOP)
    assert path.stat().st_size < 2500
    start = time.perf_counter()
    read = pth.read_state_dict(path)
    assert time.perf_counter() - start < 1
    leaf = read
    for _ in range(levels):
        assert leaf["a"] is leaf["b"]
        leaf = leaf["a"]
    np.testing.assert_array_equal(leaf["w"], FOUR)


@pytest.mark.parametrize("kind", FORMATS)
def test_a_far_memo_index_is_refused(tmp_path, kind):
    """LONG_BINPUT 2**27: 363 bytes that made C's unpickler allocate a 2 GB memo."""
    far = pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + op_put(2**27) + pickle.STOP
    refused(write(tmp_path / "far.pth", kind, far, storage=None), "memo index 134217728")
    near = far.replace(op_put(2**27), op_put(0))
    assert pth.read_state_dict(write(tmp_path / "near.pth", kind, near, storage=None)) == {}


def test_a_zip_member_larger_than_its_storage_is_refused_uninflated(tmp_path, monkeypatch):
    """A zip bomb: 16 MB of zeros (16 KB deflated) for four floats. Its declared size
    is checked before anything is inflated: the member is never opened."""
    bomb = tmp_path / "bomb.pth"
    bomb.write_bytes(zip_bytes(state(("w", op_tensor(False))), [("0", bytes(16 << 20))],
                               compression=zipfile.ZIP_DEFLATED))
    assert bomb.stat().st_size < 100_000
    opened, real_open = [], zipfile.ZipFile.open

    def recording_open(archive, member, *args, **kwargs):
        opened.append(getattr(member, "filename", member))
        return real_open(archive, member, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", recording_open)
    refused(bomb, "storage '0' is 16777216 bytes where its tensors need 16")
    assert "archive/data/0" not in opened and "archive/data.pkl" in opened


def test_a_zip_member_that_inflates_too_much_is_refused_even_at_the_right_size(tmp_path):
    """A million zero floats, deflated 1000 times smaller: the sizes agree, but no torch
    file is compressed at all; the same storage stored plainly reads."""
    pickled = state(("w", op_tensor(False, size=(10**6,), storage=op_storage(False, 10**6))))
    zeros = bytes(4 * 10**6)
    deflated = tmp_path / "deflated.pth"
    deflated.write_bytes(zip_bytes(pickled, [("0", zeros)], compression=zipfile.ZIP_DEFLATED))
    refused(deflated, "inflates")
    stored = tmp_path / "stored.pth"
    stored.write_bytes(zip_bytes(pickled, [("0", zeros)]))
    assert not pth.read_state_dict(stored)["w"].any()


@pytest.mark.parametrize("container", ["dict", "list"])
def test_900_nested_dicts_or_lists_are_refused_not_a_recursion_error(tmp_path, container):
    deep = write(tmp_path / "deep.pth", "zip", op_nested(900, container), storage=None)
    refused(deep, "nested more than 100 deep")
    shallow = write(tmp_path / "shallow.pth", "zip", op_nested(50, container), storage=None)
    assert len(pth.read_state_dict(shallow)["a"]) == 1


# --- objects changed through BUILD ----------------------------------------------------------

def op_build(target, **attributes):
    """`target` (opcodes), then BUILD with the state {name: text}: the pickle's way to
    set an object's attributes (`obj.__dict__.update(state)`)."""
    fields = b"".join(op_str(k) + op_str(v) + pickle.SETITEM for k, v in attributes.items())
    return target + pickle.EMPTY_DICT + fields + pickle.BUILD


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("dtype", ["|S4", "<M8[s]"])
def test_the_storage_dtype_cannot_be_changed_through_build(tmp_path, kind, dtype):
    """FloatStorage told `dtype = "|S4"`: its bytes came back as strings (or datetimes)."""
    kind_changed = op_build(op_global("torch", "FloatStorage"), dtype=dtype)
    path = write(tmp_path / "dtype.pth", kind, state(("w", op_tensor(
        kind == "legacy", storage=op_storage(kind == "legacy", kind=kind_changed)))))
    refused(path, "sets the state of a _StorageType")


@pytest.mark.parametrize("target", ["function", "class", "tensor", "storage", "list"])
def test_build_changes_no_object_but_torchs_ordered_dicts(tmp_path, target):
    """BUILD on a whitelisted function set an attribute on kapps' own function, for the
    whole process; on a tensor or storage, what it reads. Only an OrderedDict gets a
    state (torch's `_metadata`, which every file in `torchfiles` carries and which loads)."""
    targets = {"function": op_global("torch._utils", "_rebuild_tensor_v2"),
               "class": op_global("collections", "OrderedDict"),
               "tensor": op_tensor(False), "storage": op_storage(False),
               "list": pickle.EMPTY_LIST}
    pickled = state(("w", op_build(targets[target], marker="set by a file")))
    refused(write(tmp_path / "build.pth", "zip", pickled), "sets the state of a")
    assert not hasattr(pth._rebuild_tensor, "marker")
    assert not hasattr(collections.OrderedDict, "marker")


# --- anything else a state dict's pickle never holds --------------------------------------

NOT_A_STATE_DICT = {
    "an opcode torch never writes (EXT1)": (pickle.EXT1 + b"\x01", "opcode 0x82"),
    "a global outside the whitelist": (op_call("builtins:eval", op_str("1")), "builtins.eval"),
    "a storage type called": (op_call("torch:FloatStorage"), "calls a _StorageType"),
    "an OrderedDict made from arguments": (op_call("collections:OrderedDict", pickle.EMPTY_DICT),
                                           "made from arguments"),
    "a tensor of no storage": (op_call("torch._utils:_rebuild_tensor_v2", op_int(1), op_int(0),
                                       op_tuple(), op_tuple()), "not a storage"),
    "a tensor of a float offset": (op_call("torch._utils:_rebuild_tensor_v2",
                                           op_storage(False), pickle.BINFLOAT + bytes(8),
                                           op_tuple(), op_tuple()), "non-negative offset"),
    "a parameter of no tensor": (op_call("torch._utils:_rebuild_parameter", op_int(1)),
                                 "not a tensor"),
    "another object reference": (op_tuple(op_str("module"), op_int(0)) + pickle.BINPERSID,
                                 "not one of torch's storages"),
    "a storage named twice with two sizes": (op_tuple(op_storage(False),
                                                      op_storage(False, numel=3)),
                                             "named twice"),
    "a dict keyed by a tuple": (pickle.EMPTY_DICT + pickle.EMPTY_TUPLE + pickle.NONE
                                + pickle.SETITEM, "keys a dict by a tuple"),
    "items set on a tuple": (pickle.EMPTY_TUPLE + op_str("k") + pickle.NONE + pickle.SETITEM,
                             "sets an item of a tuple"),
    "a list that holds itself": (pickle.EMPTY_LIST + op_put(0) + op_get(0) + pickle.APPEND,
                                 "list that holds itself"),
    "65 MARKs open": (pickle.MARK * 65, "MARKs open at once"),
    "a storage type as a value": (op_global("torch", "FloatStorage"), "holds a _StorageType"),
}


@pytest.mark.parametrize("what", sorted(NOT_A_STATE_DICT))
def test_what_a_state_dict_never_holds_is_refused(tmp_path, what):
    value, match = NOT_A_STATE_DICT[what]
    refused(write(tmp_path / "odd.pth", "zip", state(("w", value))), match)


@pytest.mark.parametrize("tweak, match", [
    (lambda data: set_zip_flag(data, 6), "NotImplementedError: strong encryption"),
    (lambda data: set_zip_flag(data, 5), "NotImplementedError: compressed patched data"),
    (lambda data: set_zip_flag(data, 0), "is encrypted"),
    (lambda data: data.replace(b"PK\x01\x02", b"PK\x01\x02"[:2] + b"\x00\x00"), "BadZipFile"),
])
def test_an_odd_zip_is_a_pth_error_not_a_traceback(tmp_path, tweak, match):
    good = tmp_path / "good.pth"
    write_zip(good, small_state())
    odd = tmp_path / "odd.pth"
    odd.write_bytes(tweak(good.read_bytes()))
    refused(odd, match)


def test_truncated_and_foreign_files_name_the_file(tmp_path):
    good = tmp_path / "good.pth"
    write_legacy(good, small_state())
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:-10])
    text = tmp_path / "notes.pth"
    text.write_text("not a model")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    for path, reason in ((cut, "truncated"), (text, "not a PyTorch file"),
                         (empty, "not a PyTorch file")):
        refused(path, reason)


# --- damaged files ----------------------------------------------------------------------------

def test_damaged_files_load_or_give_one_line_quickly_in_little_memory(tmp_path):
    """400 damaged copies of both formats (bytes changed, cut short, a zip's pickle
    damaged and zipped again): each loads or raises a one-line `PthError` naming the
    file, within 0.5 s and 20 MB; none is a MemoryError or RecursionError turned into
    one (those would be bounds missing). `bench/fuzz_pth.py` runs many more."""
    import tracemalloc

    paths = []
    for kind, writer in WRITERS.items():
        paths.append(str(tmp_path / f"good_{kind}.pth"))
        writer(paths[-1], small_state())
    cases = tmp_path / "cases"
    cases.mkdir()
    tracemalloc.start()
    try:
        results = fuzz(pth.read_state_dict, pth.PthError, paths, 400, 29, str(cases))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20
    outcomes = collections.Counter(outcome == "loaded" for _, _, outcome, _ in results)
    assert outcomes[True] > 20 and outcomes[False] > 200  # both kinds happen
    for name, how, outcome, seconds in results:
        assert seconds < 0.5, (name, how, outcome)
        if outcome != "loaded":
            assert outcome.startswith(str(cases)) and outcome.isprintable()
            assert "MemoryError" not in outcome and "RecursionError" not in outcome, outcome


# --- the command line -------------------------------------------------------------------------

def test_kapps_retrain_with_a_hostile_file_says_so_on_one_line(tmp_path, capsys):
    """`kapps retrain --weights FILE.pth`: the refusal is the user's error (one `error:`
    line naming the file, exit 2), neither a traceback nor "does not fit --architecture"."""
    import imagegen
    from retrain.cli.retrain import main as retrain_main

    marker = tmp_path / "ran"
    evil = write(tmp_path / "evil.pth", "zip", runs_code(
        collections.OrderedDict(weight=RunsCode(f"touch {marker}")), legacy=False),
        storage=None)
    image_dir = imagegen.make_class_folder(tmp_path / "pictures", {"red": 3, "blue": 3})
    code = retrain_main(["--image_dir", str(image_dir), "--weights", str(evil),
                         "--image_size", "32", "--output_dir", str(tmp_path / "out"),
                         "--bottleneck_dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {evil}: refused to load os.system")
    assert not marker.exists() and not (tmp_path / "out").exists()
