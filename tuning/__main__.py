"""`python -m tuning ...` is `kapps tune ...`."""
from kapps.process import exit_now, probe_devices
from tuning.cli_tune import main

probe_devices()
exit_now(main())
