"""``python -m higgs_sim.omni serve MODEL --omni ...``: the vLLM-Omni emulation's command line."""

import sys

from higgs_sim.omni.cli import main

sys.exit(main())
