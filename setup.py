"""kapps: Keras application builders, a retraining pipeline and hyperparameter search."""
from setuptools import find_packages, setup

# `kapps serve`: FastAPI on uvicorn; python-multipart parses picture uploads.
SERVE = ["fastapi>=0.100", "uvicorn>=0.29", "python-multipart>=0.0.13"]
# Running exports: LiteRT for .tflite files; Keras' ONNX export calls tf2onnx (and onnx),
# onnxruntime runs .onnx files.
LITERT = ["ai-edge-litert"]
ONNX = ["tf2onnx", "onnx", "onnxruntime"]

setup(
    name="kapps",
    version="0.1.0",
    description=(
        "Keras functional-API builders weight-compatible with keras.applications, "
        "retraining on folders of pictures, top-k prediction and keras-tuner searches."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",  # as Keras, TensorFlow and keras-tuner; notices at LICENSE's end
    license_files=["LICENSE", "kapps/data/LICENSE-torchvision.txt"],
    packages=find_packages(include=["kapps", "kapps.*", "retrain", "retrain.*", "tuning", "tuning.*"]),
    python_requires=">=3.11",  # keras 3.13+ needs it
    install_requires=[
        "tensorflow>=2.16",
        # The first release without the known safe_mode bypasses (CVE-2025-1550, fixed in
        # 3.9; CVE-2025-8747/-9906, 3.11; CVE-2026-1462 through TFSMLayer, 3.14): kapps
        # loads model.keras files with safe_mode on, which only holds on these releases.
        "keras>=3.14",
        "keras-tuner>=1.4.7,<1.5",  # tuning/kt_internals.py uses its private parts
        # keras-tuner imports tensorboard when TensorFlow is present; TF 2.21 no longer pulls it in.
        "tensorboard",
        "pillow",
        "matplotlib",
        "numpy",
        "scikit-learn",
        # L-BFGS for the default head fit (retrain/train/linear.py); scikit-learn needs it anyway.
        "scipy",
        # Search-space files may be YAML as well as JSON.
        "pyyaml",
        # Noto Sans CJK (OFL, 16 MB): Chinese, Japanese and Korean labels in figures on a
        # fresh install, without root or a system font package (retrain/common/fonts.py).
        "noto-cjk-sans-jp-regular",
    ],
    # The page kapps serve shows: served from the package, never from a CDN. ImageNet class
    # names (torchvision's, BSD licence beside them).
    package_data={"retrain.serving": ["static/*"], "kapps": ["data/*"]},
    extras_require={
        "serve": SERVE,
        "litert": LITERT,
        "onnx": ONNX,
        # httpx2: FastAPI's TestClient (Starlette's client since httpx was deprecated for
        # it); selenium: the page's test in a real browser;
        # tests/test_exports.py runs every format; scikit-image: its bundled photos (a cat,
        # a coffee cup) check real ImageNet weights on real pictures (tests/test_torchvision.py).
        "dev": ["pytest", "httpx2", "selenium>=4.11", "scikit-image"] + SERVE + LITERT + ONNX,
    },
    entry_points={"console_scripts": ["kapps=kapps.cli:entry"]},
)
