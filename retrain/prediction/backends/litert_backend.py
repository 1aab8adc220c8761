"""`.tflite` backend on the LiteRT runtime (`ai-edge-litert`): no TensorFlow needed."""
from kapps.errors import UserError
from kapps.process import quiet_stderr
from retrain.prediction.backends import error_text, import_runtime
from retrain.prediction.backends.fixed_size import FixedSizeBackend


class LiteRTBackend(FixedSizeBackend):
    """A `.tflite` written by `kapps export --format litert`, in any quantize mode."""

    def __init__(self, path, batch_size, threads=None):
        super().__init__(batch_size, threads)
        interpreter = import_runtime("ai_edge_litert.interpreter", "litert", path)
        try:
            with quiet_stderr():  # the runtime announces its CPU delegate on stderr
                self.interpreter = interpreter.Interpreter(model_path=path,
                                                           num_threads=self.threads)
        except ValueError as err:
            raise UserError(f"cannot load LiteRT model {path}: {error_text(err)}; pass --model "
                            "a .tflite file written by `kapps export --format litert`") from None
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        _, self.height, self.width, _ = (int(n) for n in self._input["shape"])
        self.num_classes = int(self._output["shape"][-1])
        self._batch = None

    def _infer(self, batch):
        if len(batch) != self._batch:  # the file's batch side is dynamic; size it once per size
            self.interpreter.resize_tensor_input(self._input["index"], batch.shape)
            with quiet_stderr():
                self.interpreter.allocate_tensors()
            self._batch = len(batch)
        self.interpreter.set_tensor(self._input["index"], batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output["index"])
