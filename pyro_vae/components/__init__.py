"""The parts families are built from: priors p(z), likelihoods p(x|z), encoder and decoder
networks, and distributions Pyro lacks. Each kind has a registry a plugin can add to."""

from pyro_vae.components import tabular  # noqa: E402,F401  (registers the categorical and tabular likelihoods)
from pyro_vae.components import counts  # noqa: E402,F401  (registers the count likelihoods: poisson, nb, zinb)
