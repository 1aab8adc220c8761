"""kapps: Keras application builders, a retraining pipeline and hyperparameter search."""
from setuptools import find_packages, setup

setup(
    name="kapps",
    version="0.1.0",
    description=(
        "Keras functional-API builders weight-compatible with keras.applications, "
        "retraining on folders of pictures, top-k prediction and keras-tuner searches."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["kapps", "kapps.*", "retrain", "retrain.*", "tuning", "tuning.*"]),
    python_requires=">=3.9",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.0",
        "keras-tuner>=1.4.7,<1.5",  # tuning/kt_internals.py uses its private parts
        # keras-tuner imports tensorboard when TensorFlow is present; TF 2.21 no longer pulls it in.
        "tensorboard",
        "pillow",
        "matplotlib",
        "numpy",
        "scikit-learn",
        # Search-space files may be YAML as well as JSON.
        "pyyaml",
    ],
    extras_require={
        # The LiteRT runtime: predicting on .tflite files (and checking .tflite exports).
        "litert": ["ai-edge-litert"],
        # Keras' ONNX export calls tf2onnx (and onnx); onnxruntime runs the files.
        "onnx": ["tf2onnx", "onnx", "onnxruntime"],
        # tests/test_exports.py runs every format.
        "dev": ["pytest", "ai-edge-litert", "tf2onnx", "onnx", "onnxruntime"],
    },
    entry_points={"console_scripts": ["kapps=kapps.cli:entry"]},
)
