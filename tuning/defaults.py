"""The search's defaults and tuner names, without keras-tuner or TensorFlow.

`kapps tune --help` and its flag checks read them from here, so they answer without
importing TensorFlow; `tuning.search` and `tuning.tuners` use the same values.
"""
DEFAULT_DIRECTORY = "kapps_tuning"
DEFAULT_MAX_TRIALS = 10
DEFAULT_TRIALS_PER_PROCESS = 10
# The keys of `tuning.tuners.TUNERS` (a test checks that they agree).
TUNER_NAMES = ("bayesian", "grid", "hyperband", "random")


def fits_one_process(tuner, max_trials, trials_per_process):
    """Whether a search's trials all run in the command's own process: `trials_per_process`
    is off (0 or None), or `max_trials` (random and Bayesian default to
    `DEFAULT_MAX_TRIALS`) is known and no more than it. A child would only add its
    start-up (TensorFlow's import, the project reloaded) and its memory beside ours."""
    if max_trials is None and tuner in ("random", "bayesian"):
        max_trials = DEFAULT_MAX_TRIALS
    return not trials_per_process or (max_trials is not None and
                                      max_trials <= trials_per_process)
