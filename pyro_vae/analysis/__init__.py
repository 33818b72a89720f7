"""What is done with a trained family: evaluation in nats (:mod:`~pyro_vae.analysis.evaluate`), samplers
(:mod:`~pyro_vae.analysis.samplers`), the quality of generated images (:mod:`~pyro_vae.analysis.generation`)
and the M1 classifier on latent codes (:mod:`~pyro_vae.analysis.m1`)."""
