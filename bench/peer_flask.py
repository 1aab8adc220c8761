"""The peer for `bench_serve.py`: the Flask app a user would write to serve a Keras model.

    python bench/peer_flask.py --model saved_models/digits [--port 0]

One process, Flask's own server with its defaults (a thread per request), and per
request: decode the base64 picture with Pillow, then `model.predict` on it. It speaks
the same `POST /v1/models/NAME:predict` JSON as kapps serve, so one load generator
drives both. Prints `serving at URL` once listening. Needs flask (bench only:
`pip install flask`), not a kapps dependency.
"""
import argparse
import base64
import io
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_app(model_dir):
    import keras
    from flask import Flask, jsonify, request
    from PIL import Image

    import kapps.preprocessing  # noqa: F401  (registers kapps.Preprocess for loading)

    model = keras.saving.load_model(os.path.join(model_dir, "model.keras"))
    app = Flask(__name__)

    @app.post("/v1/models/<name>:predict")
    def predict(name):
        try:
            instances = request.get_json()["instances"]
            pixels = [np.asarray(Image.open(io.BytesIO(base64.b64decode(i["b64"]))).convert("RGB"))
                      for i in instances]
        except Exception as err:
            return jsonify(error=str(err)), 400
        scores = [model.predict(p[None].astype("float32"), verbose=0)[0].tolist() for p in pixels]
        return jsonify(predictions=scores)

    return app


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", args.port, make_app(args.model), threaded=True)
    print(f"serving at http://127.0.0.1:{server.server_port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
