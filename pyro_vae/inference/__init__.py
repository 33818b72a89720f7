"""Inference on any pair of Pyro programs: the training objectives (:mod:`~pyro_vae.inference.objectives`,
:mod:`~pyro_vae.inference.importance`), the effect handler that scales sites from outside
(:mod:`~pyro_vae.inference.scaling`), gradient estimators (:mod:`~pyro_vae.inference.estimators`) and the
importance-sampled log p(x) (:mod:`~pyro_vae.inference.marginal`). Knows nothing of families."""
