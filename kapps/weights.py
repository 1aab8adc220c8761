"""Loading weights: official ImageNet files (found locally or downloaded), or a user's file.

`weights="imagenet"` looks for the official file name first in `model_dir`, then in
the Keras cache (`~/.keras/models`), and only then downloads it with its pinned
hash, so a user who has the files on disk works offline.
"""
import os


class WeightsNotFoundError(FileNotFoundError):
    """An official weights file is neither on disk nor downloadable.

    The message says why the download failed and what to do, in the spelling of the
    Python API (`weights=None`); `message(command_line=True)` gives the same in flags,
    for `kapps retrain`.
    """

    def __init__(self, info, fname, folder, reason):
        self.model_name, self.fname, self.folder, self.reason = info.name, fname, folder, reason
        self.url = info.weights_url + fname
        super().__init__(self.message())

    def message(self, command_line=False, scratch=True):
        """The message; `scratch=False` leaves out training from scratch (for a command
        that needs the ImageNet classifier itself)."""
        model_dir, flags = (("--model_dir", "--weights none --fine_tune all") if command_line
                            else ("model_dir", "weights=None"))
        return (f"ImageNet weights file {self.fname} for {self.model_name} is not on disk and "
                f"could not be downloaded ({self.reason}). Download it from {self.url} and put "
                f"it in {self.folder} (or point {model_dir} at its folder)"
                + (f", or train from scratch with {flags}." if scratch else "."))


# What the resolver and sockets say when there is no network (or no route to the server).
_OFFLINE_SIGNS = ("name or service not known", "name resolution", "network is unreachable",
                  "no route to host", "connection refused", "timed out")


def download_failure(err):
    """Why `keras.utils.get_file` failed, in a few words (its messages repeat the URL)."""
    text = " ".join(str(err).split())
    if isinstance(err, ValueError) and "hash" in text.lower():
        return "the downloaded file's MD5 hash does not match the published one"
    if " -- " in text:  # Keras: "URL fetch failure on URL: CODE -- REASON"
        text = text.split(" -- ", 1)[1]
    reason = f"{type(err).__name__}: {text}" if text else type(err).__name__
    if any(sign in text.lower() for sign in _OFFLINE_SIGNS):
        reason = f"no network: {reason}"
    return reason if len(reason) <= 200 else reason[:197] + "..."


def keras_cache_dir():
    """Where `keras.utils.get_file(..., cache_subdir="models")` keeps its files."""
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(base, "models")


def official_file(info, include_top):
    """(file name, md5) of the official ImageNet weights for `info`."""
    key = "top" if include_top else "notop"
    if key not in info.imagenet_files:
        raise ValueError(
            f"No ImageNet weights exist for {info.name} with include_top={include_top}. "
            "Use weights=None to train from scratch, or a path to your own weights file.")
    return info.imagenet_files[key]


def find_imagenet_weights(info, include_top, model_dir=None, imagenet_file=None):
    """Path of the official weights file, looked up locally, downloaded if absent.

    `imagenet_file` is `(file name, md5)` for families whose file depends on the
    width or input size (MobileNet); by default the registry's file is used.
    Raises `WeightsNotFoundError` naming the file and where to put it when neither works.
    """
    fname, file_hash = imagenet_file or official_file(info, include_top)
    for folder in (model_dir, keras_cache_dir()):
        if folder and os.path.isfile(os.path.join(folder, fname)):
            return os.path.join(folder, fname)
    import keras  # here: `keras_cache_dir` and the messages answer without TensorFlow

    try:
        return keras.utils.get_file(
            fname, info.weights_url + fname, cache_subdir="models", file_hash=file_hash,
            hash_algorithm="md5")
    except Exception as err:  # network down, proxy, hash mismatch: one actionable message
        raise WeightsNotFoundError(info, fname, model_dir or keras_cache_dir(),
                                   download_failure(err)) from None


def load_weights(model, info, weights, include_top, model_dir=None, imagenet_file=None):
    """Load `weights` (`"imagenet"`, a file path, or None) into a freshly built `model`."""
    if weights is None:
        return model
    if weights == "imagenet":
        path = find_imagenet_weights(info, include_top, model_dir, imagenet_file)
    else:
        path = str(weights)
        if not os.path.isfile(path):
            raise WeightsNotFoundError(
                f"Weights file {path} does not exist. Pass weights='imagenet', weights=None, "
                "or the path of an existing .weights.h5 / .h5 file.")
    model.load_weights(path)
    return model
