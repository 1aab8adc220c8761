from kapps.process import exit_now, probe_devices
from retrain.cli_retrain import main

probe_devices()
exit_now(main())
