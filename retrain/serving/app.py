"""The prediction service: TF Serving's REST API, a top-k endpoint and a web page.

`create_app(models)` returns a FastAPI (ASGI) app; `kapps serve` runs it on uvicorn,
tests drive it with FastAPI's `TestClient`. Routes:

- `GET  /v1/models/{name}`: the model's status, in TF Serving's JSON shape.
- `GET  /v1/models/{name}/metadata`: its signature and labels.
- `POST /v1/models/{name}:predict`: `{"instances": [{"b64": ...}, ...]}` (or the
  columnar `{"inputs": ...}`) answered with every class's score in label order, so a
  client written for TF Serving works unchanged.
- `POST /v1/models/{name}:classify?top_k=3`: one picture (multipart field `file`, JSON
  `{"b64": ...}`, or the raw bytes) answered with the best labels and translations.
- `POST /v1/models/{name}:explain?top_k=3`: as :classify, plus a Grad-CAM heatmap of
  where the model looked for its first answer (outside TF Serving's API; a model.keras).
- `GET  /v1/models`: the models served (for the page's model picker); `GET /`: the page.

Pictures arrive as bytes and are decoded here, in a thread pool, with the same
decoding as `kapps predict` (`retrain.data.images.decode_bytes`); the model only ever gets
pixel arrays, so no client string is ever opened as a path and nothing is written to
disk. Every error is JSON `{"error": "one line"}`, as TF Serving answers.

Memory is bounded by the server, not by what a client sends: a request's body by
`max_upload_mb`, each picture's pixels by `MAX_PIXELS` and a request's by
`MAX_REQUEST_PIXELS` (both read from the headers before decoding; a picture resized
ahead counts at least its float32 input size, so thousands of 1x1 GIFs cannot add up
to gigabytes), a request's pictures by `MAX_REQUEST_PICTURES`, and each picture is
resized to the model's input as it is decoded, so batches hold only input-size pixels
and a request holds at most one full picture per decoding thread. A body must arrive
within `READ_TIMEOUT_S` plus a second per `MIN_UPLOAD_BYTES_PER_S`.
"""
import asyncio
import base64
import binascii
import contextlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Union

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from kapps.errors import UserError
from retrain.data import images
from retrain.prediction import explain
from retrain.prediction.predictor import Predictor
from retrain.prediction.backends.resize import resize_bilinear
from retrain.common.png import png_bytes
from retrain.serving.batching import Batcher

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
# Pictures with more pixels are refused from their header: a few kilobytes of PNG can
# decode to gigabytes. 50 megapixels is above what phone cameras save by default.
MAX_PIXELS = 50_000_000
# All of a request's pictures together: bounds the decoding time one request costs.
MAX_REQUEST_PIXELS = 4 * MAX_PIXELS
# Pictures in one :predict request (TF Serving's clients send batches of tens).
MAX_REQUEST_PICTURES = 1024
FORMATS = images.FORMAT_NAMES
MIB = 1 << 20
# Seconds a request's body may take to arrive between two parts: a client that declares
# more than it sends must not hold a connection and its buffer for ever.
READ_TIMEOUT_S = 30
# And a whole body may take READ_TIMEOUT_S plus a second per this many bytes: one byte
# every 29 s does not hold a connection for years.
MIN_UPLOAD_BYTES_PER_S = 64 * 1024


# Request and response bodies: they validate requests and document the API at /docs.
class B64(BaseModel):
    """A picture's encoded bytes (JPEG, PNG, ...) in base64, as TF Serving takes binary inputs."""
    b64: str


class PredictRequest(BaseModel):
    """TF Serving's predict request, in row (`instances`) or columnar (`inputs`) form."""
    signature_name: Optional[str] = Field(None, description="accepted and ignored: one signature")
    instances: Optional[List[Union[B64, Dict[str, B64]]]] = Field(
        None, description='pictures: `{"b64": ...}`, or `{"images": {"b64": ...}}`')
    inputs: Optional[Union[List[B64], Dict[str, List[B64]]]] = Field(
        None, description='pictures in columnar form: `[{"b64": ...}]` or `{"images": [...]}`')

    @model_validator(mode="after")
    def _one_form(self):
        if (self.instances is None) == (self.inputs is None):
            raise ValueError('give exactly one of "instances" and "inputs"')
        return self

    def pictures(self):
        """The B64 items, whichever form the request used."""
        rows = self.instances if self.instances is not None else self.inputs
        if isinstance(rows, dict):
            rows = _only_value(rows)
        return [_only_value(row) if isinstance(row, dict) else row for row in rows]


class PredictResponse(BaseModel):
    """Each picture's scores in label order: `predictions` for rows, `outputs` for columns."""
    predictions: Optional[List[List[float]]] = None
    outputs: Optional[List[List[float]]] = None


class Answer(BaseModel):
    label: str
    translation: str
    score: float


class ClassifyResponse(BaseModel):
    """The best answers for one picture, best first."""
    model: str
    predictions: List[Answer]


class Status(BaseModel):
    error_code: str = "OK"
    error_message: str = ""


class VersionStatus(BaseModel):
    version: str = "1"
    state: str = "AVAILABLE"
    status: Status = Status()


class StatusResponse(BaseModel):
    """TF Serving's model status: one version, loaded and available."""
    model_version_status: List[VersionStatus]


class ModelInfo(BaseModel):
    name: str
    labels: List[str]
    translations: List[str]
    answered_by: str = Field(description="which runtime and path answer this model")


class ModelsResponse(BaseModel):
    models: List[ModelInfo]
    max_upload_mb: float


class ExplainResponse(ClassifyResponse):
    """The best answers for one picture and where the model looked for the first (Grad-CAM)."""
    label: str = Field(description="the answer explained: the first")
    layer: str = Field(description="the layer whose feature map is explained")
    heatmap: List[List[float]] = Field(
        description="rows, top row first, 0 to 1, at the feature map's size")
    overlay: str = Field(description="the picture with the heatmap laid over it, a base64 PNG")


class ErrorResponse(BaseModel):
    """Every error: one line saying what is wrong and what to send instead."""
    error: str


ERRORS = {code: {"model": ErrorResponse} for code in (400, 404, 413, 422)}
# The body of :classify and :explain: one picture, in any of three encodings.
ONE_PICTURE = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary"}}}},
    "application/json": {"schema": {"$ref": "#/components/schemas/B64"}},
    "image/*": {"schema": {"type": "string", "format": "binary"}}}}}


def _only_value(mapping):
    if len(mapping) != 1:
        raise HTTPException(422, f"a named input must have one name (the model has one input, "
                                 f"`images`); received names {sorted(mapping)}")
    return next(iter(mapping.values()))


class _ServedModel:
    """A loaded model and the batcher that feeds it."""

    def __init__(self, name, predictor, max_batch_size, batch_timeout_micros):
        self.name = name
        self.predictor = predictor
        # Where the model takes pictures resized ahead, they are resized as decoded.
        self.input_size = predictor.input_size
        self.batcher = Batcher(predictor, max_batch_size, batch_timeout_micros,
                               name=f"kapps-serve-{name}", resized=self.input_size is not None)


class _BodyLimit:
    """ASGI middleware: refuse a request body over `max_bytes` with 413, reading no more of
    it, and one whose next part takes more than `read_timeout_s` to arrive with 408.

    A declared `Content-Length` is checked before anything is read; a chunked body is
    counted as it arrives.
    """

    def __init__(self, app, max_bytes, read_timeout_s=READ_TIMEOUT_S):
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s

    def _message(self):
        return (f"the request is larger than --max_upload_mb {self.max_bytes / MIB:g} MiB; "
                "send a smaller picture")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_bytes:
            status = 413 if length.isdigit() else 400
            error = self._message() if length.isdigit() else "Content-Length is not a number"
            return await JSONResponse({"error": error}, status, headers={"Connection": "close"})(
                scope, receive, send)
        received = 0
        body_done = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_timeout_s + (
            int(length) if int(length) else self.max_bytes) / MIN_UPLOAD_BYTES_PER_S

        async def limited_receive():
            nonlocal received, body_done
            if body_done:  # after the body: waiting for a disconnect is not reading
                return await receive()
            wait = min(self.read_timeout_s, deadline - loop.time())
            try:
                message = await asyncio.wait_for(receive(), max(wait, 0))
            except asyncio.TimeoutError:
                raise HTTPException(408, "the request body stopped arriving, or arrives too "
                                         f"slowly (under {MIN_UPLOAD_BYTES_PER_S // 1024} KiB/s "
                                         f"after {self.read_timeout_s:g} s); send the whole "
                                         "body at once", headers={"Connection": "close"}) from None
            body_done = not message.get("more_body", False)
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, self._message())
            return message

        await self.app(scope, limited_receive, send)


def create_app(models, translations=None, max_batch_size=32, batch_timeout_micros=2000,
               max_upload_mb=20, runtime="auto", threads=None, read_timeout_s=READ_TIMEOUT_S):
    """The service for `models`, as a FastAPI app to run on any ASGI server.

    Args:
        models: a dict {name: model}, each model an exported folder (as for
            `retrain.Predictor`) or an already loaded `Predictor`. Each is loaded once.
        translations: a translations file or dict {label: translation}, for every model.
        max_batch_size: the most pictures per model call. Defaults to `32`.
        batch_timeout_micros: how long a picture waits for others to share its model
            call, in microseconds. Defaults to `2000`.
        max_upload_mb: the largest request body in MiB: one picture, or one JSON body
            with all its base64 pictures. Defaults to `20`.
        runtime: what runs a `model.keras` (see `retrain.Predictor`): `auto` (a kept
            LiteRT/ONNX conversion if there is one, else TensorFlow), `tensorflow`,
            `litert` or `onnx` (converted once at start if not kept). Defaults to `auto`.
        threads: the runtime's threads. Defaults to every core.
        read_timeout_s: the longest wait, in seconds, for the next part of a request's
            body; a slower client gets 408. Defaults to `READ_TIMEOUT_S`.

    Returns:
        A `fastapi.FastAPI` app. Raises `UserError` for a model that cannot be loaded.
    """
    if not models:
        raise ValueError("create_app needs at least one model: {name: model folder}")
    if max_upload_mb <= 0:
        raise ValueError(f"max_upload_mb must be more than 0. Received max_upload_mb={max_upload_mb}")
    served = {}
    for name, model in models.items():
        predictor = model if isinstance(model, Predictor) else Predictor(
            model, translations=translations, runtime=runtime, threads=threads)
        served[name] = _ServedModel(name, predictor, max_batch_size, batch_timeout_micros)
    max_bytes = int(max_upload_mb * MIB)
    # Pillow releases the GIL while decoding, so a few threads decode in parallel.
    # Grad-CAM models are made on first use and then reused: one thread makes and runs them.
    explainer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kapps-explain")
    # Decoded pictures waiting for that thread are full size (the overlay draws on them):
    # at most this many requests decode and wait at once, so their memory is bounded.
    explaining = asyncio.Semaphore(2)
    decoders = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1),
                                  thread_name_prefix="kapps-decode")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        for model in served.values():  # uvicorn has finished the requests in flight
            model.batcher.close()
        decoders.shutdown()
        explainer.shutdown()

    app = FastAPI(title="kapps serve", lifespan=lifespan,
                  description="TF Serving's REST API for models exported by `kapps retrain`, "
                              "plus top-k answers with labels and translations.")
    app.state.models = served
    app.add_middleware(_BodyLimit, max_bytes=max_bytes, read_timeout_s=read_timeout_s)
    _add_error_handlers(app)

    def lookup(name):
        if name not in served:
            raise HTTPException(404, f"model {name!r} is not served; served models: "
                                     f"{', '.join(served)}")
        return served[name]

    async def decode(items, model):
        """Pixels of each (name, bytes), resized to the model's input where it takes them so;
        HTTP 400/413 naming the first that fails, before any is decoded where a header
        tells."""
        loop = asyncio.get_running_loop()
        min_side, size = model.predictor.min_side, model.input_size
        if len(items) > MAX_REQUEST_PICTURES:
            raise HTTPException(413, f"the request holds {len(items)} pictures, more than "
                                     f"{MAX_REQUEST_PICTURES}; send them in several requests")
        pixels = sum(await loop.run_in_executor(decoders, _pixel_counts, items, min_side,
                                                size))
        if pixels > MAX_REQUEST_PIXELS:
            raise HTTPException(413, f"the request's {len(items)} pictures decode to "
                                     f"{pixels / 1e6:.0f} megapixels, more than "
                                     f"{MAX_REQUEST_PIXELS / 1e6:g}; send fewer or smaller "
                                     "pictures a request")
        tasks = [loop.run_in_executor(decoders, _decode_picture, name, data, min_side, size)
                 for name, data in items]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    async def score(model, items):
        pictures = await decode(items, model)
        scores = await model.batcher.scores(pictures)
        for (name, _), result in zip(items, scores):
            if isinstance(result, str):
                raise HTTPException(400, f"{name}: {result}")
        return scores

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(os.path.join(STATIC_DIR, "index.html"))

    @app.get("/v1/models", response_model=ModelsResponse)
    def list_models():
        """The models served, with their labels: the page's model picker reads this."""
        return {"models": [{"name": m.name, "labels": m.predictor.labels,
                            "translations": m.predictor.translations,
                            "answered_by": m.predictor.answered_by} for m in served.values()],
                "max_upload_mb": max_upload_mb}

    @app.get("/v1/models/{name}", response_model=StatusResponse, responses=ERRORS)
    def status(name: str):
        """TF Serving's model status: version 1, AVAILABLE."""
        lookup(name)
        return {"model_version_status": [VersionStatus()]}

    @app.get("/v1/models/{name}/metadata", responses=ERRORS)
    def metadata(name: str):
        """TF Serving's metadata shape: the serving signature (encoded pictures in, scores
        out), plus the labels in output order and their translations."""
        model = lookup(name)
        labels = model.predictor.labels
        signature = {
            "inputs": {"images": {"dtype": "DT_STRING", "name": "images",
                                  "tensor_shape": {"dim": [{"size": "-1", "name": ""}]}}},
            "outputs": {"scores": {"dtype": "DT_FLOAT", "name": "scores",
                                   "tensor_shape": {"dim": [{"size": "-1", "name": ""},
                                                            {"size": str(len(labels)),
                                                             "name": ""}]}}},
            "method_name": "tensorflow/serving/predict"}
        return {"model_spec": {"name": name, "signature_name": "", "version": "1"},
                "metadata": {"signature_def": {"signature_def": {"serving_default": signature}},
                             "labels": labels,
                             "translations": model.predictor.translations}}

    @app.post("/v1/models/{name}:predict", response_model=PredictResponse,
              response_model_exclude_none=True, responses=ERRORS)
    async def predict(name: str, request: PredictRequest):
        """Every class's score for each picture, in label order (see the metadata's labels)."""
        model = lookup(name)
        items = [(f"instance {i}", _b64_bytes(item.b64, f"instance {i}"))
                 for i, item in enumerate(request.pictures())]
        if not items:
            raise HTTPException(400, 'no pictures: send {"instances": [{"b64": ...}]}')
        scores = [s.tolist() for s in await score(model, items)]
        return {"predictions": scores} if request.instances is not None else {"outputs": scores}

    @app.post("/v1/models/{name}:classify", response_model=ClassifyResponse, responses=ERRORS,
              openapi_extra=ONE_PICTURE)
    async def classify(name: str, http_request: Request,
                       top_k: int = Query(3, ge=1, description="answers to return")):
        """The best `top_k` labels, translations and scores for one picture: a multipart
        upload (field `file`), JSON `{"b64": ...}`, or the picture's bytes as the body."""
        model = lookup(name)
        picture = await _read_picture(http_request, max_bytes)
        [scores] = await score(model, [picture])
        predictor = model.predictor
        best = np.argsort(-scores, kind="stable")[:top_k]
        return {"model": name, "predictions": [
            {"label": predictor.labels[i], "translation": predictor.translations[i],
             "score": float(scores[i])} for i in best]}

    @app.post("/v1/models/{name}:explain", response_model=ExplainResponse,
              responses={**ERRORS, 501: {"model": ErrorResponse}}, openapi_extra=ONE_PICTURE)
    async def explain_picture(name: str, http_request: Request,
                              top_k: int = Query(3, ge=1, description="answers to return")):
        """As :classify, plus a Grad-CAM heatmap of where the model looked for its first
        answer: a grid and the picture with it laid over. Outside TF Serving's API; the
        model must be served from its model.keras (501 otherwise)."""
        model = lookup(name)
        try:
            explain.check_explainable(model.predictor.model_path, flag=f"model {name!r}")
        except UserError as err:
            raise HTTPException(501, str(err)) from None
        picture_name, data = await _read_picture(http_request, max_bytes)
        loop = asyncio.get_running_loop()
        async with explaining:
            pixels = await loop.run_in_executor(decoders, _decode_picture, picture_name, data,
                                                model.predictor.min_side)
            return await loop.run_in_executor(explainer, _explained, model, pixels, top_k)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _explained(model, pixels, top_k):
    """The :explain answer for decoded pixels; 501 for a model Grad-CAM cannot explain."""
    try:
        [(heatmap, result)] = model.predictor.explain([pixels], top_k=top_k)
        layer = model.predictor.gradcam().layer
    except UserError as err:
        raise HTTPException(501, f"model {model.name!r}: {err}") from None
    overlay = png_bytes(explain.blend(pixels, heatmap, max_side=explain.OVERLAY_SIDE))
    return {"model": model.name,
            "predictions": [{"label": p.label, "translation": p.translation, "score": p.score}
                            for p in result.predictions],
            "label": result.predictions[0].label, "layer": layer,
            "heatmap": explain.heatmap_grid(heatmap),
            "overlay": base64.b64encode(overlay).decode("ascii")}


def _pixel_counts(items, min_side, size=None):
    """Pixels each (name, bytes) will decode to for `min_side`, from its header (a phone
    JPEG decodes reduced: 0.75 of its 12 megapixels for 224 px); 0 where there is no
    header to read (decoding then says why). Resized ahead to `size` (height, width), a
    picture is held as float32 until its batch runs: it counts at least that, 4 bytes a
    channel where a decoded pixel takes 1."""
    held = 4 * size[0] * size[1] if size else 0
    counts = []
    for _, data in items:
        try:
            counts.append(max(images.decoded_pixels(data, min_side), held))
        except images.ImageError:
            counts.append(held)
    return counts


def _decode_picture(name, data, min_side=None, size=None):
    """Pixels of one picture's bytes, a JPEG reduced for the model's side as `kapps predict`
    reduces it: uint8 as decoded, or with `size` (height, width) float32 resized as the
    model resizes; HTTP 413 for too many pixels, 400 if unreadable, 503 out of memory."""
    try:
        pixels = images.decode_bytes(data, name=name, max_pixels=MAX_PIXELS, min_side=min_side)
        return pixels if size is None else resize_bilinear(pixels, *size)
    except MemoryError:
        raise HTTPException(503, f"{name}: not enough memory to decode it now; try again, "
                                 "or send a smaller picture") from None
    except images.TooManyPixelsError as err:
        raise HTTPException(413, f"{name}: {err.reason}; send a picture of at most "
                                 f"{MAX_PIXELS / 1e6:g} megapixels") from None
    except images.ImageError as err:
        raise HTTPException(400, f"{name} cannot be read: {err.reason}; send a {FORMATS} "
                                 "picture") from None


def _b64_bytes(text, name):
    try:
        return base64.b64decode(text)
    except (binascii.Error, ValueError):
        raise HTTPException(400, f"{name}: b64 is not valid base64; send the picture's bytes "
                                 "base64-encoded") from None


async def _read_picture(request, max_bytes):
    """(name, bytes) of the one picture in a :classify request, whatever its encoding."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return await _multipart_file(request, max_bytes)
    body = await request.body()
    if not body:
        raise HTTPException(400, "empty body; send a picture as multipart field `file`, as JSON "
                                 '{"b64": ...}, or as the body')
    if content_type.startswith("application/json"):
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            reason = "nested too deeply" if isinstance(err, RecursionError) else err
            raise HTTPException(400, f"the body is not valid JSON ({reason}); send "
                                     '{"b64": "<base64 picture>"}') from None
        if not isinstance(document, dict) or not isinstance(document.get("b64"), str):
            raise HTTPException(422, 'the JSON body needs a string field "b64" holding the '
                                     "base64 picture")
        return "b64", _b64_bytes(document["b64"], "b64")
    return "body", body


async def _multipart_file(request, max_bytes):
    """(file name, bytes) of the first file in a multipart body, parsed in memory.

    python-multipart keeps each file in memory up to `MAX_MEMORY_FILE_SIZE`; it is set
    above the body limit, so an upload is never spooled to a temporary file on disk.
    """
    from python_multipart import create_form_parser
    from python_multipart.exceptions import FormParserError

    files = []
    try:
        parser = create_form_parser({"Content-Type": request.headers["content-type"]},
                                    on_field=None, on_file=files.append,
                                    config={"MAX_MEMORY_FILE_SIZE": max_bytes + 1})
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except (FormParserError, ValueError) as err:
        raise HTTPException(400, f"the multipart body cannot be parsed ({err}); send the "
                                 "picture as form field `file`") from None
    if not files:
        raise HTTPException(400, "the multipart body has no file; send the picture as form "
                                 "field `file`")
    upload = files[0]
    upload.file_object.seek(0)
    name = (upload.file_name or b"file").decode("utf-8", "replace")
    return name, upload.file_object.read()


def _add_error_handlers(app):
    """Every error as `{"error": "one line"}`, as TF Serving answers."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, err):
        return JSONResponse({"error": str(err.detail).splitlines()[0]}, err.status_code,
                            headers=getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def server_error(request, err):
        # Out of memory (Python's or TensorFlow's) is the server's state, not a bug: 503.
        busy = isinstance(err, MemoryError) or type(err).__name__ == "ResourceExhaustedError"
        if busy:
            return JSONResponse({"error": "the server ran out of memory answering this "
                                          "request; try again, or send fewer or smaller "
                                          "pictures"}, 503)
        # The client gets the kind of error only (its text may hold paths and internals);
        # Starlette raises it on after this answer, so the server's log has the traceback.
        return JSONResponse({"error": f"internal error ({type(err).__name__}); this is a "
                                      "bug in kapps serve, please report it with the "
                                      "server's log"}, 500)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, err):
        first = err.errors()[0]
        if first["type"] == "json_invalid":
            reason = first.get("ctx", {}).get("error", "JSON decode error")
            return JSONResponse({"error": f"the body is not valid JSON ({reason}); send "
                                          '{"instances": [{"b64": ...}]}'}, 400)
        if first["type"] == "missing" and tuple(first["loc"]) == ("body",):
            return JSONResponse({"error": "the request has no JSON body; send Content-Type: "
                                          'application/json and {"instances": [{"b64": ...}]}'},
                                400)
        where = ".".join(str(part) for part in first["loc"] if part != "body") or "body"
        message = str(first["msg"]).removeprefix("Value error, ")
        return JSONResponse({"error": f"{where}: {message}".splitlines()[0]}, 422)
