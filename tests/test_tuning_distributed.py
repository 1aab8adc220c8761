"""keras-tuner's chief/worker mode with a kapps search: three processes on 127.0.0.1.

The chief holds the oracle and serves trials over gRPC; two workers run the same
search call (training stubbed as in test_tuning.py) and must together finish the
3 x 2 x 2 grid with no trial run twice. docs/TUNING.md describes the setup.
"""
import os
import socket
import subprocess
import sys
import textwrap

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)

SCRIPT = textwrap.dedent("""
    import gc, os, sys, time
    gc.collect = lambda *args: 0  # as in test_tuning.py: 0.4 s per call, nothing to free
    sys.path.insert(0, {tests!r})
    import tuning
    from retrain.config import RetrainConfig
    from test_tuning import GRID, STUB_IMAGE_DIR, StubHyperModel

    me = os.environ["KERASTUNER_TUNER_ID"]

    class Worker(StubHyperModel):
        def fit(self, *args, **kwargs):
            # Each worker holds its first trial until the other is inside one too, so
            # both take part however slowly one of them starts.
            open(os.path.join({root!r}, f"ready_{{me}}"), "w").close()
            deadline = time.time() + 120
            while not all(os.path.exists(os.path.join({root!r}, f"ready_{{w}}"))
                          for w in ("tuner0", "tuner1")) and time.time() < deadline:
                time.sleep(0.1)
            time.sleep(0.05)
            return super().fit(*args, **kwargs)

    tuner, rows = tuning.search(RetrainConfig(image_dir=STUB_IMAGE_DIR, architecture="lenet5"),
                                "grid", GRID, hypermodel=Worker,
                                directory=os.path.join({root!r}, "runs"))
    if me == "chief":
        print("CHIEF", len(rows), sorted({{r["status"] for r in rows}}))
    else:
        print("RAN", ",".join(map(str, StubHyperModel.runs)))
""")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_chief_and_two_workers_finish_a_grid_without_repeating_a_trial(tmp_path):
    script = tmp_path / "search.py"
    script.write_text(SCRIPT.format(tests=TESTS, root=str(tmp_path)), encoding="utf-8")
    port = str(free_port())
    procs = {}
    for tuner_id in ("chief", "tuner0", "tuner1"):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO,
                   KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP="127.0.0.1",
                   KERASTUNER_ORACLE_PORT=port)
        procs[tuner_id] = subprocess.Popen(
            [sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
    outputs = {}
    try:
        for tuner_id, proc in procs.items():
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, f"{tuner_id}:\n{err[-3000:]}"
            outputs[tuner_id] = out
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()

    assert "CHIEF 12 ['COMPLETED']" in outputs["chief"]
    ran = {}
    for tuner_id in ("tuner0", "tuner1"):
        line = next(l for l in outputs[tuner_id].splitlines() if l.startswith("RAN "))
        ran[tuner_id] = [int(t) for t in line[4:].split(",") if t]
        assert ran[tuner_id], f"{tuner_id} ran no trial"
        assert f"worker {tuner_id}" in outputs[tuner_id]
        assert "trial " in outputs[tuner_id] and "/12 " in outputs[tuner_id]
    everything = ran["tuner0"] + ran["tuner1"]
    assert sorted(everything) == list(range(12))  # all 12, none twice
    assert (tmp_path / "runs" / "grid_lenet5" / "trials.csv").is_file()
