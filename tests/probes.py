"""Scripts the tests run in a fresh Python process to watch what a command imports."""

# The first lines of a script that makes TensorFlow and Keras unimportable.
BLOCK_TENSORFLOW = r"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
"""

# Runs `kapps ARGS...` with TensorFlow and Keras unimportable, then checks neither loaded:
# `python -c WITHOUT_TENSORFLOW predict --model x.tflite pic.png`.
WITHOUT_TENSORFLOW = BLOCK_TENSORFLOW + r"""
from kapps.cli import main
code = main(sys.argv[1:])
assert not [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")]
sys.exit(code)
"""

# Runs `kapps ARGS...` as the console script does (`kapps.cli.entry`) and, as it exits,
# checks that TensorFlow loaded without the packages kapps holds back (Keras would load
# them for parts kapps does not use): `python -c ENTRY_HOLDING_BACK predict --model ...`.
ENTRY_HOLDING_BACK = r"""
import sys
import kapps.cli as cli
from kapps.process import HELD_BACK
def exit_checked(code):
    assert "tensorflow" in sys.modules, "TensorFlow was not loaded"
    loaded = [name for name in HELD_BACK if name in sys.modules]
    assert not loaded, f"loaded: {loaded}"
    sys.exit(code)
cli.exit_now = exit_checked
sys.argv[0] = "kapps"
cli.entry()
"""


def printed_by(code, timeout=300):
    """The words `python -c code` prints, run in a fresh process (which must succeed)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()
