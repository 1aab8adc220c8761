"""kapps' `mobilenet_v2_torchvision` against torchvision's own model, on real photos.

Run by hand, with a second Python that has torch and torchvision (a scratch venv:
`python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch torchvision`):

    python bench/bench_torchvision_parity.py --torch_python /tmp/torchenv/bin/python

Both networks get the same pictures, preprocessed once here as torchvision's
reference does (shorter side to 256, bilinear; centre crop 224; ImageNet mean/std),
and the largest logit difference is printed. The torch side also checks kapps' .pth
reader on files torch itself writes, in both formats. Tests never need torch.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

TORCH_SIDE = r"""
import json, sys, numpy as np, torch, torchvision
data = np.load(sys.argv[1])
model = torchvision.models.mobilenet_v2()
model.load_state_dict(torch.load(sys.argv[2], map_location="cpu", weights_only=True))
model.eval()
with torch.no_grad():
    logits = model(torch.from_numpy(data["x"]).permute(0, 3, 1, 2)).numpy()
state = {"conv": torch.randn(4, 3, 3, 3), "t": torch.randn(5, 7).t(), "n": torch.tensor(3)}
torch.save(state, sys.argv[3])
torch.save(state, sys.argv[4], _use_new_zipfile_serialization=False)
np.savez(sys.argv[5], logits=logits, **{k: v.numpy() for k, v in state.items()})
print(json.dumps({"torch": torch.__version__, "torchvision": torchvision.__version__}))
"""


def reference_pixels(path):
    """torchvision's ImageNet evaluation transform, as float32 RGB in [0, 255]."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    scale = 256 / min(w, h)
    image = image.resize((round(w * scale), round(h * scale)), Image.BILINEAR)
    w, h = image.size
    left, top = (w - 224) // 2, (h - 224) // 2
    return np.asarray(image.crop((left, top, left + 224, top + 224)), "float32")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--torch_python", required=True,
                        help="a Python interpreter with torch and torchvision")
    args = parser.parse_args()

    import kapps
    from kapps import pth, torchvision_weights
    from kapps.sample_photos import sample_photos
    from kapps.imagenet import class_names

    photos = sample_photos()
    x = kapps.preprocess_input(np.stack([reference_pixels(p) for p in photos.values()]),
                               "torch")
    x = np.asarray(x)
    weights = torchvision_weights.find_file()
    model = kapps.create_model("mobilenet_v2_torchvision", weights="torchvision",
                               classifier_activation=None)
    ours = np.asarray(model(x, training=False))

    with tempfile.TemporaryDirectory() as tmp:
        inputs, out = os.path.join(tmp, "x.npz"), os.path.join(tmp, "out.npz")
        zip_file, legacy_file = os.path.join(tmp, "zip.pth"), os.path.join(tmp, "legacy.pth")
        np.savez(inputs, x=x)
        versions = json.loads(subprocess.run(
            [args.torch_python, "-c", TORCH_SIDE, inputs, weights, zip_file, legacy_file, out],
            check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        theirs = np.load(out)
        for name in (zip_file, legacy_file):
            read = pth.read_state_dict(name)
            same = all(np.array_equal(read[k], theirs[k]) for k in ("conv", "t", "n"))
            print(f"kapps.pth reads torch {versions['torch']}'s "
                  f"{os.path.basename(name)}: {'same tensors' if same else 'DIFFERENT'}")
        logits = theirs["logits"]

    names = class_names()
    print(f"torchvision {versions['torchvision']} vs kapps mobilenet_v2_torchvision, "
          f"{len(photos)} photos at 224 px:")
    print("| photo | largest logit difference | same top-1 | top-3 (kapps) |")
    print("|---|---|---|---|")
    for i, name in enumerate(photos):
        diff = float(np.abs(ours[i] - logits[i]).max())
        probs = np.exp(ours[i] - ours[i].max())
        probs /= probs.sum()
        top = np.argsort(-probs)[:3]
        same = np.argmax(ours[i]) == np.argmax(logits[i])
        print(f"| {name} | {diff:.2e} | {'yes' if same else 'no'} | "
              + ", ".join(f"{names[j]} {probs[j]:.3f}" for j in top) + " |")
    print(f"largest difference over all: {float(np.abs(ours - logits).max()):.2e} "
          f"(logits up to {float(np.abs(logits).max()):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
