"""`.onnx` backend on ONNX Runtime: no TensorFlow needed."""
from kapps.errors import UserError
from retrain.prediction.backends import error_text, import_runtime
from retrain.prediction.backends.fixed_size import FixedSizeBackend


class OnnxBackend(FixedSizeBackend):
    """An `.onnx` written by `kapps export --format onnx`, on ONNX Runtime's CPU provider."""

    def __init__(self, path, batch_size, threads=None):
        super().__init__(batch_size, threads)
        ort = import_runtime("onnxruntime", "onnx", path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.log_severity_level = 3  # errors only: its notices are for ONNX developers
        try:
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own types for a foreign file
            raise UserError(f"cannot load ONNX model {path}: {error_text(err)[:200]}; pass "
                            "--model an .onnx file written by `kapps export --format onnx`") \
                from None
        model_input = self.session.get_inputs()[0]
        self._input = model_input.name
        shape = model_input.shape
        if len(shape) != 4 or not all(isinstance(n, int) for n in shape[1:]) or shape[3] != 3:
            raise UserError(f"ONNX model {path} takes {shape}, not pictures of a fixed size "
                            "[batch, height, width, 3]; pass --model an .onnx file written by "
                            "`kapps export --format onnx`")
        _, self.height, self.width, _ = shape
        self.num_classes = self.session.get_outputs()[0].shape[-1]

    def _infer(self, batch):
        return self.session.run(None, {self._input: batch})[0]
