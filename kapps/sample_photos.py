"""Real photographs that installed Python packages ship, found without importing them.

Checks on real pictures need no download: scikit-learn (a kapps dependency) ships
`china.jpg` and `flower.jpg`, matplotlib (one too) `grace_hopper.jpg`, and scikit-image
(a development dependency) `chelsea` (a tabby cat), `coffee`, `astronaut` and `rocket`.
"""
import importlib.util
import os

# name -> (package, path inside it)
PHOTOS = {
    "chelsea": ("skimage", ("data", "chelsea.png")),
    "coffee": ("skimage", ("data", "coffee.png")),
    "astronaut": ("skimage", ("data", "astronaut.png")),
    "rocket": ("skimage", ("data", "rocket.jpg")),
    "china": ("sklearn", ("datasets", "images", "china.jpg")),
    "flower": ("sklearn", ("datasets", "images", "flower.jpg")),
    "grace_hopper": ("matplotlib", ("mpl-data", "sample_data", "grace_hopper.jpg")),
}


def _package_folder(package):
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return locations[0] if locations else None


def photo_path(name):
    """Path of the photo `name` (a key of `PHOTOS`), or None when its package is missing."""
    package, parts = PHOTOS[name]
    folder = _package_folder(package)
    path = os.path.join(folder, *parts) if folder else None
    return path if path and os.path.isfile(path) else None


def sample_photos(names=None):
    """{name: path} of the photos (all of `PHOTOS` by default) whose package is installed."""
    found = {name: photo_path(name) for name in (names or PHOTOS)}
    return {name: path for name, path in found.items() if path}
