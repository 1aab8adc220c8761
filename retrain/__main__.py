from kapps.process import exit_now
from retrain.cli_retrain import main

exit_now(main())
