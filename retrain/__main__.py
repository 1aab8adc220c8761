from kapps.process import command_line, exit_now
from retrain.cli_retrain import main

command_line()
exit_now(main())
