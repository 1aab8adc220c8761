"""`python -m tuning ...` is `kapps tune ...`."""
from kapps.process import exit_now
from tuning.cli_tune import main

exit_now(main())
