"""``python -m emfformer ...`` (and ``torchrun ... -m emfformer train ...``): the command-line interface."""

import sys

from .cli import main

sys.exit(main())
