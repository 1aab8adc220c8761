"""The search's defaults and tuner names, without keras-tuner or TensorFlow.

`kapps tune --help` and its flag checks read them from here, so they answer without
importing TensorFlow; `tuning.search` and `tuning.tuners` use the same values.
"""
DEFAULT_DIRECTORY = "kapps_tuning"
DEFAULT_MAX_TRIALS = 10
DEFAULT_TRIALS_PER_PROCESS = 10
# The keys of `tuning.tuners.TUNERS` (a test checks that they agree).
TUNER_NAMES = ("bayesian", "grid", "hyperband", "random")
