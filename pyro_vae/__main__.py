"""``python -m pyro_vae`` works like ``pyro-vae``."""

import sys

from .cli import main

sys.exit(main())
