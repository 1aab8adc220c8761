"""`python -m tuning ...` is `kapps tune ...`."""
from kapps.fast_exit import exit_now
from kapps.quiet import probe_devices
from tuning.cli import main

probe_devices()
exit_now(main())
