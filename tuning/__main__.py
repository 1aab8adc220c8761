"""`python -m tuning ...` is `kapps tune ...`."""
import sys

from kapps.quiet import probe_devices
from tuning.cli import main

probe_devices()
sys.exit(main())
