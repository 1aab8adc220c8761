"""kapps: Keras functional-API builders weight-compatible with `keras.applications`.

`create_model(name, **kwargs)` builds any registered architecture;
`list_models()` names them.
"""
from kapps.quiet import import_tensorflow

import_tensorflow()  # before Keras loads it, so its C++ start-up chatter stays hidden

from kapps.registry import ModelInfo, create_model, get_model_info, list_models, register_model
from kapps.preprocessing import Preprocess, preprocess_input

# Importing each builder module registers it.
from kapps.lenet5 import LeNet5
from kapps.small_cnn import SmallCNN
from kapps.vgg16 import VGG16, VGG19
from kapps.inception_v3 import InceptionV3
from kapps.mobilenet import MobileNet
from kapps.mobilenet_v2 import MobileNetV2
from kapps.resnet50 import ResNet50
from kapps.alexnet import AlexNet
from kapps.googlenet import GoogLeNet
from kapps.densenet import DenseNet121
from kapps.mobilenet_v3 import MobileNetV3Large, MobileNetV3Small

__all__ = [
    "ModelInfo", "create_model", "get_model_info", "list_models", "register_model",
    "Preprocess", "preprocess_input", "LeNet5", "SmallCNN",
    "VGG16", "VGG19", "InceptionV3", "MobileNet", "MobileNetV2", "ResNet50",
    "AlexNet", "GoogLeNet", "DenseNet121", "MobileNetV3Small", "MobileNetV3Large",
]
__version__ = "0.1.0"
