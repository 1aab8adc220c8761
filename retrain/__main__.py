from kapps.fast_exit import exit_now
from kapps.quiet import probe_devices
from retrain.cli import main

probe_devices()
exit_now(main())
