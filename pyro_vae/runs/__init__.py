"""A run on disk: the run folder and its files (:mod:`~pyro_vae.runs.folder`) and the checkpoint
that records the run (:mod:`~pyro_vae.runs.checkpoint`)."""
