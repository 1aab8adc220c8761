from kapps.process import command_line, exit_now
from retrain.cli.retrain import main

command_line()
exit_now(main())
