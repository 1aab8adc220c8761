"""`kapps serve`: models exported by `kapps retrain` behind TF Serving's REST API.

`create_app(models)` builds the ASGI app (mount it anywhere, or test it with FastAPI's
`TestClient`); `serve(models)` runs it on uvicorn until SIGINT or SIGTERM. FastAPI and
uvicorn are the `serve` extra: `pip install "kapps[serve]"`.

May import: retrain.common, retrain.data, retrain.prediction.
"""
import contextlib
import signal
import socket
import threading

from kapps.errors import UserError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501  # TF Serving's REST port
# Requests still running this long after a stop signal are dropped.
GRACEFUL_SHUTDOWN_S = 30


def create_app(models, **kwargs):
    """The FastAPI app for `models` {name: folder or Predictor}; see `retrain.serving.app.create_app`."""
    from retrain.serving.app import create_app as _create_app

    return _create_app(models, **kwargs)


def listen(host=DEFAULT_HOST, port=DEFAULT_PORT):
    """A listening TCP socket on host:port (port 0: a free one); `UserError` if it cannot be had."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on such sockets, and
        # without it every response waits ~40 ms for a delayed ACK (Nagle's algorithm).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(2048)
        except OSError:
            sock.close()
            raise
        return sock
    except OSError as err:
        raise UserError(f"cannot listen on {host}:{port} ({err.strerror or err}); pass --port "
                        "a free port or --host an address of this machine") from None


@contextlib.contextmanager
def _stop_signals_end_normally():
    """Let SIGINT/SIGTERM end `uvicorn.Server.run` normally.

    uvicorn finishes the requests in flight on a stop signal, then raises the signal
    again with the previous handlers restored; with the default handlers the process
    would die by it (KeyboardInterrupt, or status 143). These handlers do nothing, so
    `kapps serve` exits 0 after a clean shutdown.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in stops}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(models, host=DEFAULT_HOST, port=DEFAULT_PORT, translations=None, max_batch_size=32,
          batch_timeout_micros=2000, max_upload_mb=20, runtime="auto", threads=None):
    """Load `models` {name: exported folder}, print the URL, serve until SIGINT/SIGTERM.

    Binds to loopback unless `host` says otherwise. On a stop signal the requests in
    flight are finished, then this returns. Other arguments: see `create_app`.
    """
    import uvicorn

    sock = listen(host, port)  # first: a taken port is told before minutes of model loading
    try:
        app = create_app(models, translations=translations, max_batch_size=max_batch_size,
                         batch_timeout_micros=batch_timeout_micros, max_upload_mb=max_upload_mb,
                         runtime=runtime, threads=threads)
    except BaseException:
        sock.close()
        raise
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(f"serving {', '.join(models)} at http://{shown}:{bound_port}/ (Ctrl+C to stop)",
          flush=True)
    for name, model in app.state.models.items():
        print(f"  {name}: answered by {model.predictor.answered_by}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    with _stop_signals_end_normally():
        uvicorn.Server(config).run(sockets=[sock])
