"""``python -m pyro_vae`` works like ``pyro-vae``."""

import sys

from pyro_vae.cli.app import main

sys.exit(main())
