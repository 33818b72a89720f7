"""Training: :func:`~pyro_vae.training.fit.fit` runs a family's programs under the objective, with the
schedules, checkpoints and resume, and :mod:`~pyro_vae.training.finish` evaluates and reports at the end."""
