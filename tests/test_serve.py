"""`kapps serve` in-process: TF Serving's REST API, batching, bad input, the command line.

The module fixture trains a tiny classifier on scikit-learn's real 8x8 digits (a few
seconds) and exports it as `kapps retrain` does, so answers are checked for being
right, not only well-formed. Requests go through FastAPI's `TestClient` or httpx2's
ASGI transport; one test runs the real command in a subprocess and stops it.
"""
import asyncio
import base64
import io
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="kapps serve needs fastapi: pip install -e '.[dev]'")
import httpx2 as httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from retrain import Predictor  # noqa: E402
from retrain.serving import create_app  # noqa: E402
from retrain.serving.batching import Batcher  # noqa: E402

ZH = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def digit_pictures():
    """(pixels uint8 (8, 8), digit) of scikit-learn's 1,797 scanned digits, as PNGs hold them."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8), digits.target


def png_bytes(pixels, mode=None):
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def export_digits_model(folder):
    """Train a tiny dense network on the digits and write it as `kapps retrain` exports."""
    import keras
    import kapps

    pixels, targets = digit_pictures()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Resizing(8, 8, name="resize")(inputs)
    x = kapps.Preprocess("unit")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    rgb = np.repeat(pixels[..., None], 3, axis=-1).astype("float32")
    model.fit(rgb, targets, epochs=15, batch_size=64, verbose=0)
    os.makedirs(folder, exist_ok=True)
    model.save(os.path.join(folder, "model.keras"))
    with open(os.path.join(folder, "labels.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(str(d) for d in range(10)) + "\n")
    with open(os.path.join(folder, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"config": {"image_size": 8}}, f)
    return folder


def right_answers(predictor, count=16):
    """`count` (png bytes, digit) that the model answers right, one digit after another."""
    pixels, targets = digit_pictures()
    chosen, index = [], 0
    while len(chosen) < count:
        digit = len(chosen) % 10
        while targets[index] != digit or np.argmax(
                predictor.scores([np.repeat(pixels[index][..., None], 3, -1)])[0]) != digit:
            index += 1
        chosen.append((png_bytes(pixels[index]), digit))
        index += 1
    return chosen


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return export_digits_model(str(tmp_path_factory.mktemp("digits")))


@pytest.fixture(scope="module")
def translations(tmp_path_factory):
    path = tmp_path_factory.mktemp("zh") / "zh.csv"
    path.write_text("".join(f"{d},{ZH[d]}\n" for d in range(10)), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def predictor(model_dir, translations):
    return Predictor(model_dir, translations=translations)


@pytest.fixture(scope="module")
def samples(predictor):
    return right_answers(predictor)


@pytest.fixture(scope="module")
def client(predictor):
    app = create_app({"digits": predictor}, max_upload_mb=1)
    with TestClient(app) as client:
        yield client


def b64(data):
    return base64.b64encode(data).decode("ascii")


def test_status_and_metadata_have_tf_servings_shape(client):
    assert client.get("/v1/models/digits").json() == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    meta = client.get("/v1/models/digits/metadata").json()
    assert meta["model_spec"] == {"name": "digits", "signature_name": "", "version": "1"}
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["outputs"]["scores"]["tensor_shape"]["dim"][1]["size"] == "10"
    assert meta["metadata"]["labels"] == [str(d) for d in range(10)]
    assert meta["metadata"]["translations"] == ZH


def test_predict_answers_rows_and_columns_equal_to_predictor(client, predictor, samples):
    data = [png for png, _ in samples[:5]]
    rows = client.post("/v1/models/digits:predict",
                       json={"instances": [{"b64": b64(d)} for d in data]})
    assert rows.status_code == 200
    predictions = np.array(rows.json()["predictions"])
    assert predictions.shape == (5, 10)
    assert list(predictions.argmax(1)) == [digit for _, digit in samples[:5]]
    arrays = [np.asarray(Image.open(io.BytesIO(d)).convert("RGB")) for d in data]
    np.testing.assert_allclose(predictions, np.stack(predictor.scores(arrays)), atol=1e-6)

    named = client.post("/v1/models/digits:predict",
                        json={"instances": [{"images": {"b64": b64(d)}} for d in data]})
    columns = client.post("/v1/models/digits:predict",
                          json={"inputs": {"images": [{"b64": b64(d)} for d in data]}})
    assert named.json() == rows.json()
    assert columns.json() == {"outputs": rows.json()["predictions"]}


def test_one_picture_scores_equal_kapps_predict(client, model_dir, samples, tmp_path, capsys):
    from retrain.cli.predict import main as predict_main

    path = tmp_path / "seven.png"
    path.write_bytes(samples[7][0])
    answer = client.post("/v1/models/digits:classify?top_k=3",
                         files={"file": ("seven.png", path.read_bytes(), "image/png")}).json()
    assert predict_main(["--model", model_dir, "--json", str(path)]) == 0
    [expected] = json.loads(capsys.readouterr().out)["results"]
    assert [p["label"] for p in answer["predictions"]] == \
        [p["label"] for p in expected["predictions"]]
    np.testing.assert_allclose([p["score"] for p in answer["predictions"]],
                               [p["score"] for p in expected["predictions"]], atol=1e-6)
    [scores] = Predictor(model_dir).scores([str(path)])
    predicted = client.post("/v1/models/digits:predict",
                            json={"instances": [{"b64": b64(path.read_bytes())}]}).json()
    np.testing.assert_allclose(predicted["predictions"][0], scores, atol=1e-6)


def test_classify_takes_multipart_b64_or_raw_bytes_with_translations(client, samples):
    png, digit = samples[3]
    answers = [
        client.post("/v1/models/digits:classify", files={"file": ("3.png", png, "image/png")}),
        client.post("/v1/models/digits:classify", json={"b64": b64(png)}),
        client.post("/v1/models/digits:classify", content=png,
                    headers={"content-type": "image/png"}),
    ]
    for answer in answers:
        assert answer.status_code == 200
        body = answer.json()
        assert body["model"] == "digits" and len(body["predictions"]) == 3
        best = body["predictions"][0]
        assert best["label"] == str(digit) and best["translation"] == ZH[digit]
        scores = [p["score"] for p in body["predictions"]]
        assert scores == sorted(scores, reverse=True)
    assert answers[0].json() == answers[1].json() == answers[2].json()
    top1 = client.post("/v1/models/digits:classify?top_k=1", json={"b64": b64(png)}).json()
    assert len(top1["predictions"]) == 1
    assert len(client.post("/v1/models/digits:classify?top_k=50",
                           json={"b64": b64(png)}).json()["predictions"]) == 10


def bomb_png(side=20000):
    """A valid PNG of a few kilobytes that decodes to side x side pixels (400 MP by default)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\x00" + bytes((side + 7) // 8)  # filter byte, then 1-bit pixels
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def picture_bytes(kind, side=16):
    """A small real picture of Pillow format `kind` (TIFF, ICO, TGA...), as bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (200, 30, 30)).save(buffer, format=kind)
    return buffer.getvalue()


def noise_png(side):
    return png_bytes(np.random.default_rng(0).integers(0, 256, (side, side, 3), np.uint8))


def _bad_requests(samples):
    png = samples[0][0]
    bomb = bomb_png()
    assert len(bomb) < 100_000
    return {
        "not a picture": ("digits:classify", {"files": {"file": ("notes.txt", b"just text", "text/plain")}},
                          400, "notes.txt cannot be read"),
        "truncated": ("digits:classify", {"files": {"file": ("cut.png", png[:len(png) // 2], "image/png")}},
                      400, "truncated"),
        "empty body": ("digits:classify", {"content": b""}, 400, "empty body"),
        "empty file": ("digits:classify", {"files": {"file": ("e.png", b"", "image/png")}}, 400, "empty"),
        "empty predict": ("digits:predict", {"content": b"", "headers": {"content-type": "application/json"}},
                          400, "no JSON body"),
        "malformed json": ("digits:predict", {"content": b'{"instances": [',
                                       "headers": {"content-type": "application/json"}},
                           400, "not valid JSON"),
        "malformed classify json": ("digits:classify", {"content": b"{b64",
                                                 "headers": {"content-type": "application/json"}},
                                    400, "not valid JSON"),
        "wrong json shape": ("digits:predict", {"json": {"instances": "all of them"}}, 422, "instances"),
        "both forms": ("digits:predict", {"json": {"instances": [], "inputs": []}}, 422, "exactly one"),
        "bad base64": ("digits:predict", {"json": {"instances": [{"b64": "abc"}]}}, 400, "base64"),
        "a bad one among good": ("digits:predict", {"json": {"instances": [
            {"b64": b64(png)}, {"b64": b64(b"GIF89a nonsense")}]}}, 400, "instance 1"),
        "unknown model": ("nope:predict", {"json": {"instances": [{"b64": b64(png)}]}},
                          404, "'nope' is not served"),
        "over max_upload_mb": ("digits:classify", {"files": {"file": ("big.png", noise_png(700),
                                                               "image/png")}},
                               413, "--max_upload_mb 1 MiB"),
        "over max_upload_mb as b64": ("digits:predict", {"json": {"instances": [
            {"b64": b64(noise_png(600))}]}}, 413, "--max_upload_mb"),
        "decompression bomb": ("digits:classify", {"files": {"file": ("bomb.png", bomb, "image/png")}},
                               413, "megapixels"),
        "json nested 200k deep": ("digits:classify", {"content": b"[" * 200_000 + b"]" * 200_000,
                                                       "headers": {"content-type": "application/json"}},
                                  400, "nested too deeply"),
        "a TIFF, which the server does not decode": (
            "digits:classify", {"files": {"file": ("x.jpg", picture_bytes("TIFF"), "image/jpeg")}},
            400, "not a JPEG, PNG, GIF, BMP or WebP picture"),
    }


def test_bad_input_gets_a_one_line_json_error_and_the_server_goes_on(client, samples,
                                                                      monkeypatch):
    import tempfile

    def no_disk(*args, **kwargs):
        raise AssertionError("the server must not write uploads to disk")

    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp", "mkdtemp"):
        monkeypatch.setattr(tempfile, name, no_disk)
    failures = []
    for case, (route, kwargs, status, words) in _bad_requests(samples).items():
        response = client.post(f"/v1/models/{route}", **kwargs)
        body = response.json()
        if (response.status_code, set(body)) != (status, {"error"}) or words not in body["error"] \
                or "\n" in body["error"]:
            failures.append(f"{case}: {response.status_code} {body}")
    assert not failures, "\n".join(failures)
    assert client.get("/v1/models/nope").status_code == 404
    good = client.post("/v1/models/digits:classify", json={"b64": b64(samples[4][0])})
    assert good.status_code == 200 and good.json()["predictions"][0]["label"] == "4"


def test_uploads_stay_in_memory(predictor, samples, monkeypatch):
    """Above 1 MiB Starlette and python-multipart spool uploads to temporary files by default."""
    import tempfile

    def no_disk(*args, **kwargs):
        raise AssertionError("the server must not write uploads to disk")

    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, no_disk)
    big = noise_png(900)
    assert len(big) > 2 * 1024 * 1024
    with TestClient(create_app({"digits": predictor}, max_upload_mb=4)) as client:
        response = client.post("/v1/models/digits:classify",
                               files={"file": ("big.png", big, "image/png")})
    assert response.status_code == 200, response.json()


def test_a_client_string_is_never_opened_as_a_path(client, tmp_path):
    """A file name or b64 text naming a real picture on disk must not read that picture."""
    real = tmp_path / "real.png"
    real.write_bytes(png_bytes(digit_pictures()[0][0]))
    as_name = client.post("/v1/models/digits:classify",
                          files={"file": (str(real), b"garbage", "image/png")})
    as_b64 = client.post("/v1/models/digits:predict",
                         json={"instances": [{"b64": b64(str(real).encode())}]})
    as_body = client.post("/v1/models/digits:classify", content=str(real).encode(),
                          headers={"content-type": "text/plain"})
    assert [as_name.status_code, as_b64.status_code, as_body.status_code] == [400, 400, 400]


def test_concurrent_requests_share_model_calls_and_each_gets_its_answer(predictor, samples):
    app = create_app({"digits": predictor}, max_batch_size=8, batch_timeout_micros=300_000)
    batcher = app.state.models["digits"].batcher

    async def ask_all():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kapps") as http:
            return await asyncio.gather(*[
                http.post("/v1/models/digits:predict", json={"instances": [{"b64": b64(png)}]})
                for png, _ in samples])

    responses = asyncio.run(ask_all())
    batcher.close()
    assert [r.status_code for r in responses] == [200] * len(samples)
    assert batcher.pictures == len(samples)
    assert batcher.calls <= len(samples) / 4  # 16 requests in at most 4 calls of up to 8
    for response, (png, digit) in zip(responses, samples):
        scores = response.json()["predictions"][0]
        assert int(np.argmax(scores)) == digit
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        np.testing.assert_allclose(scores, predictor.scores([pixels])[0], atol=1e-5)


class _Recorder:
    """A stand-in predictor that records the size of every batch it is given."""

    def __init__(self):
        self.sizes = []

    def scores(self, pictures):
        self.sizes.append(len(pictures))
        return [np.full(2, picture[0, 0, 0], np.float32) for picture in pictures]


def test_batcher_keeps_max_batch_size_and_order():
    recorder = _Recorder()
    batcher = Batcher(recorder, max_batch_size=4, batch_timeout_micros=200_000)
    pictures = [np.full((1, 1, 3), i, np.uint8) for i in range(10)]

    async def ask():
        return await asyncio.gather(batcher.scores(pictures[:3]), batcher.scores(pictures[3:]))

    first, rest = asyncio.run(ask())
    batcher.close()
    assert [s[0] for s in first + rest] == list(range(10))
    assert recorder.sizes == [4, 4, 2]


def test_page_is_served_and_needs_nothing_from_the_internet(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'accept="image/*"' in page.text and "capture=" in page.text
    assert '<button type="submit"' in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    for text in (page.text, client.get("/static/app.js").text, client.get("/static/style.css").text):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    assert client.get("/docs").status_code == 200
    listing = client.get("/v1/models").json()
    assert listing["models"][0]["name"] == "digits" and listing["max_upload_mb"] == 1
    assert listing["models"][0]["answered_by"] == "TensorFlow on model.keras"


def run_serve(*argv, **kwargs):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen([sys.executable, "-m", "kapps.cli", "serve", *map(str, argv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=REPO, **kwargs)


def test_user_mistakes_are_one_line_and_exit_2(model_dir, tmp_path, capsys):
    import socket
    from retrain.cli.serve import main

    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    cases = {
        "may hold only": ["--model", f"bad:name={model_dir}"],
        "two models are named": ["--model", model_dir, "--model", model_dir],
        "--max_batch_size must be": ["--model", model_dir, "--max_batch_size", "0"],
        "cannot listen on": ["--model", model_dir, "--port", port],
    }
    for words, argv in cases.items():
        assert main([str(a) for a in argv]) == 2, words
        err = capsys.readouterr().err
        assert err.startswith("error:") and words in err and err.count("\n") == 1, err
    taken.close()
    done = run_serve("--model", tmp_path / "nowhere")  # the real command: no traceback
    out, err = done.communicate(timeout=120)
    assert done.returncode == 2 and out == ""
    assert err.startswith("error: model not found:") and err.count("\n") == 1, err


def test_serve_command_answers_then_stops_cleanly_on_sigterm(model_dir, samples):
    server = run_serve("--model", f"digits={model_dir}", "--port", 0,
                       "--batch_timeout_micros", 1_500_000)
    try:
        line = server.stdout.readline()
        assert line.startswith("serving digits at http://127.0.0.1:"), server.stderr.read()
        assert server.stdout.readline() == "  digits: answered by TensorFlow on model.keras\n"
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url + "v1/models/digits", timeout=30) as response:
            assert json.load(response)["model_version_status"][0]["state"] == "AVAILABLE"
        answers = []

        def ask():  # waits 1.5 s in the batcher: still in flight when SIGTERM comes
            request = urllib.request.Request(url + "v1/models/digits:classify",
                                             data=json.dumps({"b64": b64(samples[2][0])}).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                answers.append(json.load(response))

        in_flight = threading.Thread(target=ask)
        in_flight.start()
        time.sleep(0.5)
        server.send_signal(signal.SIGTERM)
        in_flight.join(timeout=30)
        assert server.wait(timeout=30) == 0, server.stderr.read()
        assert answers and answers[0]["predictions"][0]["label"] == "2"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_listening_socket_lets_asyncio_turn_off_nagle():
    """asyncio sets TCP_NODELAY only where proto is IPPROTO_TCP; without it each answer
    waited ~40 ms for a delayed ACK (measured: 48 ms per request instead of 0.8 ms)."""
    import socket
    from retrain.serving import listen

    sock = listen("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP and sock.getsockname()[1] > 0
    finally:
        sock.close()


def test_package_exports_serve():
    import retrain
    import retrain.serving

    assert retrain.serve is retrain.serving.serve


def test_a_server_on_a_litert_conversion_answers_as_tensorflow(model_dir, samples, tmp_path):
    """`kapps serve --runtime litert` converts a model.keras once at start; its answers
    stay within the exports' tolerance of TensorFlow's, and its runtime is the one asked."""
    import shutil

    pytest.importorskip("ai_edge_litert")
    folder = tmp_path / "digits"
    shutil.copytree(model_dir, folder)
    data = [png for png, _ in samples[:6]]
    expected = np.stack(Predictor(str(folder), runtime="tensorflow").scores(
        [np.asarray(Image.open(io.BytesIO(d)).convert("RGB")) for d in data]))
    app = create_app({"digits": str(folder)}, runtime="litert", threads=1)
    with TestClient(app) as client:
        answer = client.post("/v1/models/digits:predict",
                             json={"instances": [{"b64": b64(d)} for d in data]})
    assert answer.status_code == 200
    np.testing.assert_allclose(np.array(answer.json()["predictions"]), expected, atol=1e-4)
    assert len(list((folder / ".runtime").glob("*.tflite"))) == 1


def test_a_request_of_many_large_pictures_is_refused_before_any_is_decoded(client, monkeypatch):
    """Five 7000x7000 PNGs (49 megapixels each, under the per-picture cap) in a 0.3 MB body:
    before, 8 of them took the server to 11 GB; now the headers' total is refused."""
    from retrain.serving.app import MAX_PIXELS, MAX_REQUEST_PIXELS

    decoded = []
    monkeypatch.setattr("retrain.data.images.decode_bytes", lambda *a, **k: decoded.append(a))
    big = bomb_png(7000)
    assert 7000 * 7000 <= MAX_PIXELS < 5 * 7000 * 7000 and 5 * 7000 * 7000 > MAX_REQUEST_PIXELS
    response = client.post("/v1/models/digits:predict",
                           json={"instances": [{"b64": b64(big)}] * 5})
    assert response.status_code == 413 and "megapixels" in response.json()["error"]
    assert decoded == []


def test_pictures_reach_the_model_resized_to_its_input_as_they_are_decoded(predictor, samples,
                                                                          monkeypatch):
    """What waits for a batch is the model's input size, whatever the client sent, and
    scores the same as the decoded picture does through `Predictor.scores`."""
    shapes = []
    real = predictor.scores_resized

    def spy(pixels):
        shapes.extend((p.shape, p.dtype) for p in pixels)
        return real(pixels)

    monkeypatch.setattr(predictor, "scores_resized", spy)
    rng = np.random.default_rng(1)
    large = rng.integers(0, 256, (613, 877, 3), np.uint8)
    with TestClient(create_app({"digits": predictor}, max_upload_mb=4)) as client:
        response = client.post("/v1/models/digits:predict",
                               json={"instances": [{"b64": b64(png_bytes(large))}]})
    assert response.status_code == 200, response.json()
    assert shapes == [((8, 8, 3), np.dtype("float32"))]
    np.testing.assert_array_equal(response.json()["predictions"][0],
                                  predictor.scores([large])[0].tolist())


def test_server_failures_are_one_line_json_not_plain_text(predictor, samples, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise MemoryError()

    def broken(pixels):
        raise RuntimeError("something inside the model\nsecond line")

    body = {"instances": [{"b64": b64(samples[0][0])}]}
    with TestClient(create_app({"digits": predictor}), raise_server_exceptions=False) as client:
        monkeypatch.setattr("retrain.data.images.decode_bytes", out_of_memory)
        memory = client.post("/v1/models/digits:predict", json=body)
        monkeypatch.undo()
        monkeypatch.setattr(predictor, "scores_resized", broken)
        bug = client.post("/v1/models/digits:predict", json=body)
        monkeypatch.undo()
        fine = client.post("/v1/models/digits:predict", json=body)
    assert memory.status_code == 503 and "not enough memory" in memory.json()["error"]
    assert bug.status_code == 500 and set(bug.json()) == {"error"}
    assert "internal error (RuntimeError)" in bug.json()["error"]
    assert "inside the model" not in bug.json()["error"]  # no internals to the client
    assert fine.status_code == 200


# An ASGI request that declares a 1000-byte picture; each test's `receive` sends (part of) it.
CLASSIFY_1000_BYTES = {
    "type": "http", "method": "POST", "path": "/v1/models/digits:classify",
    "raw_path": b"/v1/models/digits:classify", "query_string": b"",
    "headers": [(b"content-length", b"1000"), (b"content-type", b"image/png")],
    "http_version": "1.1", "scheme": "http", "root_path": "",
    "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8501)}


def test_a_client_that_stops_sending_its_body_gets_408(predictor):
    """It declares 1000 bytes and sends 10: the server answers once the read times out,
    instead of holding the connection for ever."""
    app = create_app({"digits": predictor}, read_timeout_s=0.3)
    scope = dict(CLASSIFY_1000_BYTES)
    parts = [{"type": "http.request", "body": b"\x89PNG\r\n\x1a\n12", "more_body": True}]

    async def receive():
        if parts:
            return parts.pop()
        await asyncio.sleep(3600)  # the rest never comes

    sent = []

    async def send(message):
        sent.append(message)

    async def run():
        await asyncio.wait_for(app(scope, receive, send), 10)

    started = time.monotonic()
    asyncio.run(run())
    assert time.monotonic() - started < 5
    assert sent[0]["status"] == 408
    assert "stopped arriving" in json.loads(sent[1]["body"])["error"]


def test_explain_requests_hold_at_most_two_full_pictures_at_once(predictor, samples, monkeypatch):
    """:explain keeps each picture at full size for its overlay and runs one at a time:
    many requests at once must not all decode and wait with their pixels."""
    from retrain.serving import app as app_module

    held, most = [0], [0]
    real_decode = app_module._decode_picture

    def decode(*args):
        held[0] += 1
        most[0] = max(most[0], held[0])
        return real_decode(*args)

    def explained(model, pixels, top_k):
        time.sleep(0.05)
        held[0] -= 1
        return {"model": model.name, "predictions": [], "label": "0", "layer": "conv",
                "heatmap": [[0.0]], "overlay": ""}

    monkeypatch.setattr(app_module, "_decode_picture", decode)
    monkeypatch.setattr(app_module, "_explained", explained)
    monkeypatch.setattr(app_module.explain, "check_explainable", lambda *a, **k: None)
    app = create_app({"digits": predictor})

    async def ask_all():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kapps") as http:
            return await asyncio.gather(*[
                http.post("/v1/models/digits:explain", json={"b64": b64(png)})
                for png, _ in samples[:8]])

    responses = asyncio.run(ask_all())
    app.state.models["digits"].batcher.close()
    assert [r.status_code for r in responses] == [200] * 8, responses[0].json()
    assert most[0] <= 2


def test_thousands_of_tiny_pictures_cannot_add_up_to_gigabytes(client, monkeypatch):
    """Each picture resized ahead is held at the model's input size in float32: 43-byte
    1x1 GIFs by the thousand are refused before any is decoded, by count and by what
    they would hold."""
    from retrain.serving import app as app_module

    gif = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
    decoded = []
    monkeypatch.setattr("retrain.data.images.decode_bytes", lambda *a, **k: decoded.append(a))
    many = client.post("/v1/models/digits:predict", json={"instances": [
        {"b64": b64(gif)}] * (app_module.MAX_REQUEST_PICTURES + 1)})
    assert many.status_code == 413 and "send them in several requests" in many.json()["error"]
    # Counted at their held size: 64 bytes a picture at 8x8 would let 3 million in.
    counts = app_module._pixel_counts([("g", gif)] * 3, None, (224, 224))
    assert counts == [4 * 224 * 224] * 3
    assert decoded == []


def test_a_body_trickling_in_gets_408_once_its_whole_deadline_passes(predictor, monkeypatch):
    """One byte every 0.2 s never waits longer than the 0.3 s between parts, but the
    whole body must arrive at a minimum rate after the first `read_timeout_s`."""
    from retrain.serving import app as app_module

    monkeypatch.setattr(app_module, "MIN_UPLOAD_BYTES_PER_S", 1000)
    app = create_app({"digits": predictor}, read_timeout_s=0.3)
    scope = dict(CLASSIFY_1000_BYTES)

    async def receive():
        await asyncio.sleep(0.2)
        return {"type": "http.request", "body": b"x", "more_body": True}

    sent = []

    async def send(message):
        sent.append(message)

    started = time.monotonic()
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 20))
    assert 1.0 < time.monotonic() - started < 5  # 0.3 s + 1000 bytes at 1000 bytes/s
    assert sent[0]["status"] == 408 and "too slowly" in json.loads(sent[1]["body"])["error"]
