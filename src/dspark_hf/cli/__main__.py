"""``python -m dspark_hf.cli`` (and ``accelerate launch -m dspark_hf.cli train ...``): the ``dspark`` command."""

import sys

from dspark_hf.cli import main

sys.exit(main())
