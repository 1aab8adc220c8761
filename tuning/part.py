"""`python -m tuning.part JOB OUTCOME [FOLDER SIDE]`: one process of a search (internal,
see `tuning.processes`). Runs the pickled `run_search` job and writes what happened;
with FOLDER and SIDE, first decodes that folder's pictures for SIDE while TensorFlow
starts (`retrain.data.decode_ahead`), for the trial that makes the features."""
import pickle
import sys

from kapps.process import command_line, exit_now, start_devices


def main(job_file, outcome_file):
    from retrain.common import atomic
    from kapps.errors import UserError
    from tuning.search import run_search

    with open(job_file, "rb") as f:
        job = pickle.load(f)
    try:
        tuner, _ = run_search(**job)
    except UserError as err:
        atomic.write_json(outcome_file, {"error": str(err)})
        return 2
    except KeyboardInterrupt:
        return 130
    atomic.write_json(outcome_file, {"more": tuner.stopped_by_cap,
                                     "stopped_by_budget": tuner.stopped_by_budget})
    return 0


def decode_ahead_from(argv):
    """Start decoding ahead if `argv` (JOB OUTCOME [FOLDER SIDE]) names a folder and side."""
    if len(argv) == 4:
        from retrain.data import decode_ahead

        decode_ahead.start(argv[2], int(argv[3]))


if __name__ == "__main__":
    command_line()
    decode_ahead_from(sys.argv[1:])
    start_devices()
    exit_now(main(*sys.argv[1:3]))
