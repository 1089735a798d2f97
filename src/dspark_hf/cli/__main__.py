"""``python -m dspark_hf.cli`` (and ``accelerate launch -m dspark_hf.cli train ...``): the ``dspark`` command."""

import sys

from . import main

sys.exit(main())
