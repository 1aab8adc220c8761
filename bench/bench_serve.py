"""Benchmark: `kapps serve` under load vs the Flask app a user would write.

    python bench/bench_serve.py --model saved_models/digits [--seconds 10] [--clients 1 4 16]
                                [--memory_requests 10000]

Both servers run as whole commands in their own process on 127.0.0.1; clients are
threads in this process, each with one keep-alive connection, sending one digit
picture per `POST /v1/models/digits:predict` (TF Serving's JSON, base64 PNG) for
`--seconds`. Every answer's top-1 is checked against the picture's folder, so a fast
but wrong server shows up. Then, against kapps serve only:

- memory: its resident set size after warm-up and after `--memory_requests` more;
- faults: clients that disconnect mid-upload, and bad pictures sent among good ones,
  after which every good request must still have been answered right;
- a clean stop: SIGTERM, exit status 0.

Prints markdown tables and writes bench/out/serve.json. Run by hand; not a test.
"""
import argparse
import base64
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_DIGITS = os.path.expanduser("~/.cache/kapps/demo/digits")
PATH = "/v1/models/digits:predict"


def start(command):
    """Start a server command; return (process, host, port) once it prints its URL."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, env=env, cwd=REPO)
    line = process.stdout.readline()
    if "http://" not in line:
        process.kill()
        raise RuntimeError(f"{' '.join(command)} did not start: {line!r}")
    hostport = line.split("http://")[1].split("/")[0]
    host, port = hostport.rsplit(":", 1)
    return process, host, int(port)


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def load_pictures(folder, count, seed=0):
    """(request body, digit) for `count` pictures spread over the ten digit folders."""
    found = [(os.path.join(folder, d, name), int(d)) for d in sorted(os.listdir(folder))
             if d.isdigit() for name in sorted(os.listdir(os.path.join(folder, d)))]
    random.Random(seed).shuffle(found)
    bodies = []
    for path, digit in found[:count]:
        with open(path, "rb") as f:
            data = base64.b64encode(f.read()).decode()
        bodies.append((json.dumps({"instances": [{"b64": data}]}).encode(), digit))
    return bodies


class Client(threading.Thread):
    """One client: a keep-alive connection sending pictures until told to stop."""

    def __init__(self, host, port, pictures, stop, seed, limit=None, counter=None):
        super().__init__(daemon=True)
        self.host, self.port, self.pictures, self.stop = host, port, pictures, stop
        self.random = random.Random(seed)
        self.limit, self.counter = limit, counter
        self.latencies, self.errors, self.wrong = [], 0, 0

    def run(self):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        while not self.stop.is_set():
            if self.counter is not None and not self.counter.take():
                break
            body, digit = self.random.choice(self.pictures)
            began = time.perf_counter()
            try:
                connection.request("POST", PATH, body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                self.errors += 1
                connection.close()
                connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
                continue
            self.latencies.append(time.perf_counter() - began)
            if status != 200:
                self.errors += 1
                continue
            scores = json.loads(answer)["predictions"][0]
            self.wrong += max(range(len(scores)), key=scores.__getitem__) != digit
        connection.close()


class Counter:
    """A shared budget of requests, so N clients send exactly `total` between them."""

    def __init__(self, total):
        self.left, self.lock = total, threading.Lock()

    def take(self):
        with self.lock:
            self.left -= 1
            return self.left >= 0


def run_clients(host, port, pictures, clients, seconds=None, total=None):
    stop = threading.Event()
    counter = Counter(total) if total else None
    threads = [Client(host, port, pictures, stop, seed=i, counter=counter) for i in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    if seconds:
        time.sleep(seconds)
        stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    latencies = sorted(x for t in threads for x in t.latencies)
    return {
        "clients": clients, "seconds": round(elapsed, 2), "requests": len(latencies),
        "errors": sum(t.errors for t in threads), "wrong_top1": sum(t.wrong for t in threads),
        "throughput": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1)
        if latencies else None,
    }


def warm_up(host, port, pictures):
    run_clients(host, port, pictures, clients=4, total=200)


def disconnect_mid_upload(host, port, count=50):
    """Clients that send half of a declared body and hang up; returns how many were sent."""
    for i in range(count):
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         f"Content-Length: 5000\r\n\r\n".encode() + b'{"instances": [' * 60)
            if i % 2:
                sock.shutdown(socket.SHUT_WR)
    return count


def bad_bodies():
    """A burst of bad requests: not a picture, truncated PNG, bad base64, bad JSON."""
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00").decode()
    return [json.dumps({"instances": [{"b64": base64.b64encode(b"just text").decode()}]}),
            json.dumps({"instances": [{"b64": png}]}),
            json.dumps({"instances": [{"b64": "###"}]}),
            '{"instances": [']


def fault_run(host, port, pictures, seconds):
    """Good clients keep sending while bad clients and half-uploads hit the server."""
    stop = threading.Event()
    good = [Client(host, port, pictures, stop, seed=100 + i) for i in range(8)]
    statuses = []

    def bad_client(seed):
        rng = random.Random(seed)
        while not stop.is_set():
            connection = http.client.HTTPConnection(host, port, timeout=60)
            connection.request("POST", PATH, rng.choice(bad_bodies()),
                               {"Content-Type": "application/json"})
            statuses.append(connection.getresponse().status)
            connection.close()

    bad = [threading.Thread(target=bad_client, args=(i,), daemon=True) for i in range(4)]
    for thread in good + bad:
        thread.start()
    dropped = disconnect_mid_upload(host, port)
    time.sleep(seconds)
    stop.set()
    for thread in good + bad:
        thread.join()
    return {"good_requests": sum(len(t.latencies) for t in good),
            "good_errors": sum(t.errors for t in good),
            "good_wrong_top1": sum(t.wrong for t in good),
            "bad_requests": len(statuses),
            "bad_statuses": sorted(set(statuses)),
            "disconnects_mid_upload": dropped}


def table(rows, columns):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an exported digits model folder")
    parser.add_argument("--digits", default=DEFAULT_DIGITS, help="the demo digits folder")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--memory_requests", type=int, default=10000)
    args = parser.parse_args()
    pictures = load_pictures(args.digits, 500)
    results = {"command": " ".join(sys.argv), "load": [], "when": time.strftime("%Y-%m-%d %H:%M")}

    servers = {
        "kapps serve": [sys.executable, "-m", "kapps.cli", "serve", "--model",
                        f"digits={args.model}", "--port", "0"],
        "Flask + model.predict": [sys.executable, os.path.join(HERE, "peer_flask.py"),
                                  "--model", args.model],
    }
    for name, command in servers.items():
        process, host, port = start(command)
        try:
            warm_up(host, port, pictures)
            for clients in args.clients:
                row = run_clients(host, port, pictures, clients, seconds=args.seconds)
                row["server"] = name
                results["load"].append(row)
                print(row, flush=True)
            if name == "kapps serve":
                before = rss_mb(process.pid)
                memory = run_clients(host, port, pictures, 16, total=args.memory_requests)
                results["memory"] = {"rss_mb_before": round(before, 1),
                                     "rss_mb_after": round(rss_mb(process.pid), 1),
                                     "requests": memory["requests"], "errors": memory["errors"]}
                print(results["memory"], flush=True)
                results["faults"] = fault_run(host, port, pictures, args.seconds)
                print(results["faults"], flush=True)
                process.send_signal(signal.SIGTERM)
                results["exit_status_after_sigterm"] = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    print()
    print(table(results["load"], ["server", "clients", "requests", "throughput", "p50_ms",
                                  "p99_ms", "errors", "wrong_top1"]))
    print()
    print(json.dumps({k: results[k] for k in ("memory", "faults", "exit_status_after_sigterm")},
                     indent=2))
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "serve.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
