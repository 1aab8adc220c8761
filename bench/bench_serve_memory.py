"""Benchmark: `kapps serve`'s peak memory under requests of many large pictures.

    python bench/bench_serve_memory.py [--side 7000] [--pictures 8 24] [--image_size 96]

A request of a few large grayscale PNGs is small on the wire (a 7000x7000 flat PNG
compresses to about 60 KB) but decodes to 49 megapixels each, under the per-picture
cap. The server must resize each picture to the model's input as it decodes it, so
what a request holds is bounded by the decoder threads, not by the request.

Writes a tiny model (Resizing to `--image_size`, a Dense head) to a temporary folder,
starts `kapps serve` on it as a whole command, sends one `:predict` request per
`--pictures` count, and prints each answer's status and the server's peak resident
memory (VmHWM) after it. Run by hand; not a test.
"""
import argparse
import base64
import http.client
import io
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def write_model(folder, image_size):
    import keras

    import kapps

    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Resizing(image_size, image_size, name="resize")(inputs)
    x = kapps.Preprocess("unit")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    keras.Model(inputs, outputs).save(os.path.join(folder, "model.keras"))
    with open(os.path.join(folder, "labels.txt"), "w", encoding="utf-8") as f:
        f.write("dark\nlight\n")
    with open(os.path.join(folder, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"config": {"image_size": image_size}}, f)


def big_png(side, shade):
    buffer = io.BytesIO()
    Image.new("L", (side, side), shade).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def memory_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=7000)
    parser.add_argument("--pictures", type=int, nargs="+", default=[8, 24])
    parser.add_argument("--image_size", type=int, default=96)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="kapps-serve-memory-")
    write_model(folder, args.image_size)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server = subprocess.Popen([sys.executable, "-m", "kapps.cli", "serve", "--model",
                               f"m={folder}", "--port", "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
    try:
        line = server.stdout.readline()
        host, port = line.split("http://")[1].split("/")[0].rsplit(":", 1)
        png = base64.b64encode(big_png(args.side, 200)).decode()
        print(f"one {args.side}x{args.side} gray PNG: {len(png) * 3 // 4 / 1024:.0f} KiB; "
              f"server after start: {memory_kb(server.pid, 'VmRSS') / 1024:.0f} MB resident")
        print("| pictures | body MiB | status | answer | peak resident MB |")
        print("|---|---|---|---|---|")
        for count in args.pictures:
            body = json.dumps({"instances": [{"b64": png}] * count})
            connection = http.client.HTTPConnection(host, int(port), timeout=600)
            connection.request("POST", "/v1/models/m:predict", body,
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = response.read().decode()[:60]
            print(f"| {count} | {len(body) / 2**20:.2f} | {response.status} | `{answer}` | "
                  f"{memory_kb(server.pid, 'VmHWM') / 1024:.0f} |", flush=True)
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
