import sys

from wse_sim.cli.main import main

sys.exit(main())
