"""Full-integer (int8) LiteRT that keeps its promise: sensitive layers kept in float.

Post-training int8 quantization is fragile on some networks (depthwise convolutions,
ReLU6 ranges, a channel with a wide range): plain int8 may disagree with model.keras
on many pictures. `quantize_int8` converts, measures top-1 agreement with model.keras
on held-out training pictures (never the test split), and when it is below the target
asks TensorFlow Lite's own tool, `tf.lite.experimental.QuantizationDebugger`, for each
quantized layer's error (RMSE over the quantization scale, accumulated along the
network: about 0.29 is plain rounding, more is harm). It then keeps layers in float
(the debugger's denylisted nodes), 1, 2, 4, 8... of them until agreement reaches the
target, then bisects back to the fewest that still reach it, in two orders (`RULES`):
the debugger's worst first, and the graph's first layers first; the order needing
fewer float layers wins.
"""
import dataclasses
import functools
import os
import statistics
import tempfile
import time
import warnings

import numpy as np

from kapps.process import quiet_stderr

AGREEMENT_TARGET = 0.99  # the README's promise for a quantized export
ACCURACY_DROP = 0.005    # and at most this much test accuracy lost


@dataclasses.dataclass
class Int8Result:
    """The chosen `.tflite` bytes and how they were chosen."""
    model: bytes
    plain_agreement: float   # plain int8 vs model.keras, held-out training pictures
    agreement: float         # the chosen model's, same pictures
    float_layers: list       # tensor names kept in float, in the order they were added
    steps: list              # [(rule, layers kept in float, agreement)] tried
    plain_size: int
    plain_latency_ms: float
    latency_ms: float
    rule: str = None         # which of `RULES` chose the float layers


def _rmse_over_scale(float_values, quantized, scale, zero_point):
    """The debugger's per-layer error: RMSE of the dequantized tensor, in quantization steps."""
    dequantized = (quantized.astype(np.float32) - zero_point) * scale
    return float(np.sqrt(np.mean((float_values - dequantized) ** 2)) / scale)


def _layer_orders(debugger):
    """(quantized tensor names worst error first, the same in the graph's order), as
    `denylisted_nodes` takes them (read from the debugger's public CSV dump, which turns
    its NumericVerify names into the quantized tensors' own)."""
    import csv
    import io

    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    rows = list(csv.DictReader(io.StringIO(dump.getvalue())))
    in_order = list(dict.fromkeys(row["tensor_name"] for row in rows))
    rows.sort(key=lambda row: -np.nan_to_num(float(row["rmse/scale"] or "nan")))
    return list(dict.fromkeys(row["tensor_name"] for row in rows)), in_order


def layer_name(tensor_name):
    """The Keras layer a converted tensor comes from, for a person: the converter names a
    fused tensor by every op in it (`.../block_1_expand_relu_1/Relu6;...`)."""
    first = tensor_name.split(";")[0].split("/")
    name = first[-2] if len(first) > 1 else first[0]
    return name[:-2] if name.endswith("_1") else name


def _converter(saved_model_dir, calibration):
    """A TFLiteConverter for int8 with float fallback (layers left out of quantization
    run in float), float32 input and output as the other LiteRT exports."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([batch] for batch in calibration())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                           tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.experimental_enable_resource_variables = True
    return converter


def _write_saved_model(model, folder, size):
    """The classifier as a SavedModel with one endpoint, as Keras' LiteRT export makes it."""
    import tensorflow as tf
    from keras import export as keras_export

    archive = keras_export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", functools.partial(model.__call__, training=False),
                         input_signature=[tf.TensorSpec([None, *size, 3], tf.float32,
                                                        name="pixels")])
    archive.write_out(folder, verbose=False)


# The orders in which layers are kept in float; the one that reaches the target with
# fewer float layers wins. On a head on real ImageNet MobileNetV2 features the
# debugger's ranking needed 59 of 73 layers, the graph's order 6: quantization error
# grows along the network from the first layers (docs/BENCHMARKS.md).
RULES = ("the debugger's error (RMSE over the quantization step), worst first",
         "the graph's order, first layers first")


def _fewest(ranked, debugger, agreement, target, rule, steps, say, tf):
    """(agreement, bytes, layers) with the fewest first layers of `ranked` kept in float
    that reach `target` (1, 2, 4, 8... then bisected back), else the best tried; None
    when there is nothing to keep in float."""
    if not ranked:
        return None
    tried = {}

    def keep_float(count):
        if count not in tried:
            with quiet_stderr():
                debugger.options = tf.lite.experimental.QuantizationDebugOptions(
                    denylisted_nodes=ranked[:count])
                candidate = debugger.get_nondebug_quantized_model()
            tried[count] = (agreement(candidate), candidate)
            steps.append((rule, count, tried[count][0]))
            say(f"int8: {count} layer(s) kept in float by {rule.split(' (')[0]}: "
                f"{100 * tried[count][0]:.2f}%")
        return tried[count][0]

    low, high = 0, 1
    while high < len(ranked) and keep_float(high) < target:
        low, high = high, min(2 * high, len(ranked))
    if keep_float(high) < target:
        high = max(tried, key=lambda count: tried[count][0])  # none reaches it: the best
    else:
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if keep_float(middle) < target else (low, middle)
    return tried[high][0], tried[high][1], list(ranked[:high])


def latency_ms(model_bytes, picture, repeats=20):
    """Median milliseconds of one LiteRT invocation on `picture` ([1, h, w, 3] float32)."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet_stderr():  # the runtime announces its CPU delegate (XNNPACK) on stderr
        interpreter = Interpreter(model_content=model_bytes, num_threads=1)
        interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    times = []
    for _ in range(repeats + 2):
        interpreter.set_tensor(index, picture)
        start = time.perf_counter()
        interpreter.invoke()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times[2:])


def quantize_int8(model, size, calibration, agreement, target=AGREEMENT_TARGET, log=None):
    """int8 `.tflite` bytes of `model` whose agreement reaches `target`, if any can.

    Args:
        model: the classifier (raw pixels in, scores out).
        size: (height, width) of the file's input.
        calibration: a function yielding float32 pictures [1, h, w, 3] (training ones).
        agreement: a function `(tflite bytes) -> top-1 agreement with model.keras` on
            held-out training pictures.
        target: the agreement to reach. Defaults to `AGREEMENT_TARGET`.
        log: a function taking one line of progress, or None.

    Returns:
        An `Int8Result`. When even every layer in float falls short, the best tried.
    """
    import tensorflow as tf

    say = log or (lambda line: None)
    # The debugger runs its models on tf.lite.Interpreter, which warns that it is
    # deprecated for LiteRT's: TensorFlow's to change, not the user's to see.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        return _quantize_int8(model, size, calibration, agreement, target, say, tf)


def _quantize_int8(model, size, calibration, agreement, target, say, tf):
    with tempfile.TemporaryDirectory() as folder, quiet_stderr():
        _write_saved_model(model, folder, size)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=_converter(folder, calibration),
            debug_dataset=lambda: ([batch] for batch in calibration()))
        plain = debugger.get_nondebug_quantized_model()
    picture = next(iter(calibration()))
    plain_latency = latency_ms(plain, picture)
    first = agreement(plain)
    result = Int8Result(plain, first, first, [], [("plain int8", 0, first)], len(plain),
                        plain_latency, plain_latency)
    say(f"int8: plain full-integer agrees with model.keras on {100 * first:.2f}% of "
        "held-out training pictures")
    if first >= target:
        return result
    with quiet_stderr():
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(
            layer_direct_compare_metrics={"rmse/scale": _rmse_over_scale})
        debugger.run()
    worst, in_order = _layer_orders(debugger)

    def merit(agrees, layers):  # reaching the target first, then fewer float layers
        return (agrees >= target, -len(layers) if agrees >= target else agrees)

    best = result
    for rule, ranked in ((RULES[0], worst), (RULES[1], in_order)):
        # The debugger needs one quantized layer left; more in float than that is float32.
        found = _fewest(ranked[:-1], debugger, agreement, target, rule, result.steps, say, tf)
        if found and merit(found[0], found[2]) > merit(best.agreement, best.float_layers):
            best = dataclasses.replace(result, agreement=found[0], model=found[1],
                                       float_layers=found[2], rule=rule)
    best.steps = result.steps
    best.latency_ms = latency_ms(best.model, picture) if best.float_layers else plain_latency
    return best


def write_int8(model, path, size, calibration, agreement, target=AGREEMENT_TARGET, log=None):
    """`quantize_int8`, written atomically to `path`; returns the `Int8Result`."""
    from retrain.common import atomic

    result = quantize_int8(model, size, calibration, agreement, target, log)
    atomic.write_bytes(os.fspath(path), result.model)
    return result
