"""What a person looks at: a run's figures (:mod:`~pyro_vae.figures.plots`), its report
(:mod:`~pyro_vae.figures.report`) and the comparison of several runs (:mod:`~pyro_vae.figures.compare`)."""
