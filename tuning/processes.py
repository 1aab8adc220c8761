"""Trials in fresh processes, a few at a time, so a long search's memory stays flat.

TensorFlow keeps a few MiB of every trained Keras model that `clear_session()` does
not give back: a bare `clear_session(); build; compile(Adam); fit` loop grows about
4.7 MiB per iteration here (about 0.7 with plain SGD; building or predicting alone
does not grow). So a search runs its trials in a child process that stops after
`trials_per_process` of them; the next child resumes the project with keras-tuner's
own resume (finished trials are never run again, proposals continue as in one
process) until the search is done, out of time, or stopped.
"""
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time

from kapps.errors import UserError


def portable(hypermodel):
    """Whether another process can rebuild `hypermodel` (pickle, then import its class)."""
    if type(hypermodel).__module__ == "__main__":
        return False
    try:
        pickle.dumps(hypermodel)
    except Exception:  # a lambda, an open file...: any of them keeps the trials here
        return False
    return True


def run_in_processes(job, trials_per_process):
    """Run `run_search(**job)` in fresh processes of at most `trials_per_process` trials
    until the search ends (`job["budget"]`: seconds for all of them); returns True if
    the time budget stopped it.

    A user's mistake in a child comes back as the same one-line `UserError`; Ctrl-C
    reaches the child too, which stops and leaves the project ready to resume.
    """
    start = time.monotonic()
    first = True
    ahead = _first_decoding(job)
    with tempfile.TemporaryDirectory(prefix="kapps_tune_") as tmp:
        job_file, outcome_file = os.path.join(tmp, "job.pkl"), os.path.join(tmp, "outcome.json")
        while True:
            left = None if job["budget"] is None else \
                job["budget"] - (time.monotonic() - start)
            if left is not None and left <= 0:
                return True
            part = dict(job, budget=left, overwrite=job["overwrite"] and first, announce=first,
                        trial_cap=trials_per_process)
            with open(job_file, "wb") as f:
                pickle.dump(part, f)
            if not first and job["verbose"]:
                print(f"continuing in a fresh process (every {trials_per_process} trials, "
                      f"so that memory stays flat)")
            outcome = _run_child(job_file, outcome_file, ahead if first else None)
            first = False
            if outcome["stopped_by_budget"]:
                return True
            if not outcome["more"]:
                return False


def _first_decoding(job):
    """(folder, side) for the first child to decode while TensorFlow starts in it (the
    features are made there), for a search that starts afresh with a frozen base; else
    None. A resumed search has its features cached already."""
    from retrain.data.decode_ahead import side_for

    config = job["config"]
    project = os.path.join(job["directory"], job["project_name"])
    side = side_for(config) if job["overwrite"] or not os.path.isdir(project) else None
    return (config.image_dir, side) if side else None


def _run_child(job_file, outcome_file, ahead=None):
    if os.path.exists(outcome_file):
        os.remove(outcome_file)
    # The child imports what this process can (a hypermodel class from a user's module).
    path = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    extra = [ahead[0], str(ahead[1])] if ahead else []  # decode while TensorFlow starts
    child = subprocess.Popen([sys.executable, "-m", "tuning.part", job_file, outcome_file,
                              *extra], env=dict(os.environ, PYTHONPATH=path))
    try:
        code = child.wait()
    except KeyboardInterrupt:  # the terminal sent SIGINT to both; let the child stop first
        try:
            code = child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGINT)
            child.wait()
        raise
    outcome = {}
    if os.path.exists(outcome_file):
        with open(outcome_file, encoding="utf-8") as f:
            outcome = json.load(f)
    if "error" in outcome:
        raise UserError(outcome["error"])
    if code == 130:
        raise KeyboardInterrupt
    if code != 0 or "more" not in outcome:
        raise RuntimeError(f"a trial process of the search failed (exit status {code}); its "
                           f"error is printed above. Finished trials are kept: run the same "
                           f"search again to resume.")
    return outcome
