"""Decode pictures while TensorFlow starts: the seconds of its import are not wasted.

`kapps retrain` with a frozen base spends seconds importing TensorFlow on one core,
then decodes every new picture for the feature pass; for phone photos that decoding is
the larger part of the pass. `start` decodes the folder's pictures on the other cores
during the import, exactly as the pass would (`retrain.data.images.load_image` at the
model's side), and the pass's decode (`retrain.data.inputs`) takes them from here; `kapps
predict` on a model.keras does the same with its pictures (`prediction.backends.load_picture`
takes them). Only pixels of a file unchanged since (same size and modification time)
are given; `stop` frees them. Nothing here imports TensorFlow.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from retrain.data.images import ImageError, file_digest, list_image_files, load_image

# Pixels held at most: 0.56 MB a 12-megapixel photo decoded for 224 px, so about 230,
# more than one core decodes (22 ms a photo) in TensorFlow's 4 s import. Each is freed
# when the feature pass takes it, so the run's peak memory barely moves (+30 MB on 102
# photos, within the noise of a 1.3 GB peak).
BUDGET_BYTES = 128 << 20

_pixels = {}  # (path, min_side) -> (stat signature, uint8 pixels)
_state = {"stop": None, "pool": None}
_taking = threading.Lock()


def _signature(path):
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def start(pictures, min_side, threads=None, budget_bytes=BUDGET_BYTES, skip=frozenset()):
    """Decode `pictures` (a folder, or a list of paths) for `min_side` in the background,
    in the order the folder lists them or the list gives them, until `budget_bytes` are
    held or `stop` is called.

    `threads` defaults to every core but one (the one importing TensorFlow). A picture
    whose content digest is in `skip` (its features are cached: `cached_digests`) is
    not decoded: nothing will ask for its pixels.
    """
    stop()
    done = threading.Event()
    pool = ThreadPoolExecutor(threads or max(1, (os.cpu_count() or 1) - 1),
                              thread_name_prefix="kapps-decode-ahead")
    held = [0]
    lock = threading.Lock()

    def decode(path):
        if done.is_set():
            return
        try:
            signature = _signature(path)
            if skip and file_digest(path) in skip:
                return
            pixels = load_image(path, min_side=min_side)
        except (OSError, ImageError):
            return  # the scan or the feature pass reports it, in their words
        with lock:  # kept even after `take` said stop: it waits for this decode to end
            if held[0] + pixels.nbytes > budget_bytes:
                done.set()
                return
            held[0] += pixels.nbytes
            _pixels[(path, min_side)] = (signature, pixels)

    def walk():
        try:
            paths = list_image_files(pictures) if isinstance(pictures, str) else list(pictures)
        except OSError:
            return
        for path in paths:
            if done.is_set():
                return
            pool.submit(decode, path)

    _state.update(stop=done, pool=pool)
    threading.Thread(target=walk, name="kapps-decode-ahead-walk", daemon=True).start()


def cached_digests(bottleneck_dir, side):
    """Content digests of the pictures whose plain features are cached for a base at
    `side` px, read without TensorFlow from the cache folders' `key.json` and their
    shards' keys (`retrain.train.bottlenecks` writes both). Any base of that side counts: a
    picture cached for another base is decoded by the feature pass, as without this."""
    import json

    import numpy as np

    digests = set()
    try:
        folders = [os.path.join(bottleneck_dir, name) for name in os.listdir(bottleneck_dir)]
    except OSError:
        return digests
    for folder in folders:
        try:
            with open(os.path.join(folder, "key.json"), encoding="utf-8") as f:
                if json.load(f).get("image_size") != side:
                    continue
            shards = [name for name in os.listdir(folder) if name.endswith(".npz")
                      and not name.startswith(".")]
        except (OSError, ValueError, AttributeError):
            continue
        for name in shards:
            try:
                with np.load(os.path.join(folder, name), allow_pickle=False) as z:
                    keys = z["keys"]
            except Exception:  # noqa: BLE001 (a damaged shard: its pictures are decoded)
                continue
            digests.update(str(key)[:-3] for key in keys if str(key).endswith("_v0"))
    return digests


def side_for(config):
    """The side a retraining `config`'s feature pass decodes its pictures for, when a
    frozen base's feature pass follows and the side is known without TensorFlow (the
    registry's input size); else None: nothing is worth decoding ahead."""
    from kapps.stats import MODEL_STATS

    stats = MODEL_STATS.get(str(config.architecture).lower())
    side = config.image_size or (stats.input_size if stats else None)
    if (config.image_dir and not config.demo and side and config.fine_tune_layers() is None
            and not str(config.weights).endswith(".keras")):
        return side
    return None


def load(path, min_side):
    """`retrain.data.images.load_image(path, min_side=min_side)`: the pixels decoded ahead if
    there are, else decoded now. What the feature pass and prediction call."""
    ahead = take(path, min_side)
    return ahead if ahead is not None else load_image(path, min_side=min_side)


def take(path, min_side):
    """The pixels decoded ahead for `path` at `min_side`, given once (then freed), or None.

    The first call ends the decoding ahead: from then on the feature pass decodes what
    is left itself, so no picture is decoded twice at the same time. (A picture's
    distorted copies, which follow its plain one, decode it again as before.)
    """
    if _state["stop"] is None:
        return None
    with _taking:  # the feature pass takes from several threads at once
        if not _state["stop"].is_set():
            _state["stop"].set()
            # Decodes under way finish and are kept (tens of milliseconds): the callers
            # would otherwise decode those pictures a second time.
            _state["pool"].shutdown(wait=True, cancel_futures=True)
    entry = _pixels.pop((path, min_side), None)
    if entry is None:
        return None
    try:
        if _signature(path) != entry[0]:
            return None
    except OSError:
        return None
    return entry[1]


def stop():
    """End the decoding ahead and free what it holds."""
    if _state["stop"] is not None:
        _state["stop"].set()
        _state["pool"].shutdown(wait=True, cancel_futures=True)
    _state.update(stop=None, pool=None)
    _pixels.clear()
