import sys

from kapps.quiet import probe_devices
from retrain.cli import main

probe_devices()
sys.exit(main())
