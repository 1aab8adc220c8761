"""Dynamic batching: pictures from concurrent requests share one model call.

A network scores 16 pictures in one call in little more time than one picture, so a
server that calls the model once per request wastes most of its time on per-call
overhead. `Batcher` queues decoded pictures from any number of requests; one worker
thread takes the first waiting picture, gathers more for at most
`batch_timeout_micros` (or until `max_batch_size`), scores them with one
`Predictor.scores` call, and hands each request its own row through an asyncio
future. The knobs have TF Serving's names and meaning.

All model calls happen in that one thread: TensorFlow is then never called from two
threads at once, and the event loop is never blocked by the model.
"""
import asyncio
import queue
import threading
import time

_STOP = object()


class Batcher:
    """Score pictures from many requests in shared model calls.

    Args:
        predictor: a loaded `retrain.Predictor` (anything with `scores(list_of_arrays)`).
        max_batch_size: the most pictures per model call. Defaults to `32`.
        batch_timeout_micros: how long the first picture of a batch waits for others,
            in microseconds. Defaults to `2000`.
        name: the worker thread's name, for debugging.
        resized: the pictures come resized to `predictor.input_size` (float32), and go to
            `predictor.scores_resized`; else they are decoded uint8 pictures for
            `predictor.scores`. Defaults to `False`.
    """

    def __init__(self, predictor, max_batch_size=32, batch_timeout_micros=2000, name="batcher",
                 resized=False):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1. "
                             f"Received max_batch_size={max_batch_size}")
        if batch_timeout_micros < 0:
            raise ValueError(f"batch_timeout_micros must be 0 or more. "
                             f"Received batch_timeout_micros={batch_timeout_micros}")
        self.predictor = predictor
        self.resized = resized
        self.max_batch_size = max_batch_size
        self.timeout = batch_timeout_micros / 1e6
        self.calls = 0      # model calls made, for tests and the benchmark
        self.pictures = 0   # pictures scored
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    async def scores(self, pictures):
        """The scores (num_classes,) of each picture, in order.

        A picture the model cannot take comes back as an error string, as from
        `Predictor.scores`; an exception in the model call is raised here.
        """
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in pictures]
        for picture, future in zip(pictures, futures):
            self._queue.put((picture, future, loop))
        return list(await asyncio.gather(*futures))

    def close(self):
        """Finish the pictures already queued, then stop the worker thread."""
        self._queue.put(_STOP)
        self._thread.join()

    def _gather(self, first):
        """`first` and the pictures that arrive within the timeout; True if told to stop."""
        batch = [first]
        deadline = time.monotonic() + self.timeout
        while len(batch) < self.max_batch_size:
            try:
                item = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _work(self):
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            batch, stop = self._gather(first)
            try:
                score = self.predictor.scores_resized if self.resized else self.predictor.scores
                results = score([picture for picture, _, _ in batch])
            except Exception as err:  # a bug or a TF failure: every waiting request hears it
                results = [err] * len(batch)
            self.calls += 1
            self.pictures += len(batch)
            for (_, future, loop), result in zip(batch, results):
                try:
                    loop.call_soon_threadsafe(_settle, future, result)
                except RuntimeError:  # that request's event loop has closed: nobody waits
                    pass


def _settle(future, result):
    if future.cancelled():  # the client went away
        return
    if isinstance(result, Exception):
        future.set_exception(result)
    else:
        future.set_result(result)
