"""`python -m tuning ...` is `kapps tune ...`."""
import sys

from tuning.cli import main

sys.exit(main())
