"""Walking a Keras model's layers: its leaf layers, the `resize` layer, whether it is a chain.

Training builds models, prediction and exports read them; these few walks are shared by
all three, so they sit below them. Keras is imported by the caller's model, not here.
"""


def resize_layer(model):
    """The `resize` layer that brings raw pixels to the network's size, searched in nested
    models too (a transferred export holds it inside its base), or None: the one source
    of the size training used and prediction must use."""
    return next((layer for layer in leaf_layers(model) if layer.name == "resize"), None)


def leaf_layers(model):
    """Every layer with no sub-layers, in order, nested models expanded (InputLayers skipped)."""
    import keras

    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.extend(leaf_layers(layer))
        elif not isinstance(layer, keras.layers.InputLayer):
            out.append(layer)
    return out


def is_chain(model):
    """Whether every layer of `model` is called once, on the output of the layer before it
    (read from the saved graph: `layer.input` of a nested model is its own input)."""
    specs = model.get_config().get("layers", [])

    def takes(spec, name):
        nodes = spec.get("inbound_nodes", [])
        args = nodes[0].get("args", []) if len(nodes) == 1 else []
        return (len(args) == 1 and isinstance(args[0], dict)
                and args[0].get("config", {}).get("keras_history", [None])[0] == name)

    return bool(specs) and all(takes(spec, before["name"])
                               for before, spec in zip(specs, specs[1:]))
