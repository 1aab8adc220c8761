"""`python -m tuning ...` is `kapps tune ...`."""
from kapps.process import command_line, exit_now
from tuning.cli_tune import main

command_line()
exit_now(main())
