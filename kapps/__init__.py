"""kapps: Keras functional-API builders weight-compatible with `keras.applications`.

`create_model(name, **kwargs)` builds any registered architecture;
`list_models()` names them. Names are loaded on first use, so `import kapps` (and
the command line's `--help`) does not pay for importing TensorFlow; when it is
imported, its C++ start-up chatter is hidden (`kapps.process.import_tensorflow`).
"""
import importlib

# name -> module defining it; every builder module registers its architectures on import.
_LAZY = {
    "ModelInfo": "kapps.registry", "create_model": "kapps.registry",
    "get_model_info": "kapps.registry", "list_models": "kapps.registry",
    "register_model": "kapps.registry",
    "Preprocess": "kapps.preprocessing", "preprocess_input": "kapps.preprocessing",
    "preprocessing_layer": "kapps.preprocessing",
    "LeNet5": "kapps.lenet5", "SmallCNN": "kapps.small_cnn",
    "VGG16": "kapps.vgg16", "VGG19": "kapps.vgg16", "InceptionV3": "kapps.inception_v3",
    "MobileNet": "kapps.mobilenet", "MobileNetV2": "kapps.mobilenet_v2",
    "ResNet50": "kapps.resnet50", "AlexNet": "kapps.alexnet", "GoogLeNet": "kapps.googlenet",
    "DenseNet121": "kapps.densenet", "MobileNetV3Small": "kapps.mobilenet_v3",
    "MobileNetV3Large": "kapps.mobilenet_v3",
    "LocalResponseNormalization": "kapps.normalization",
}

__all__ = sorted(_LAZY)
__version__ = "0.1.0"


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'kapps' has no attribute {name!r}")
    from kapps.process import import_tensorflow

    import_tensorflow()  # before Keras loads it, so its C++ start-up chatter stays hidden
    return getattr(importlib.import_module(_LAZY[name]), name)
