"""Training: :func:`~pyro_vae.training.fit.fit` runs a family's programs under the objective, in
rooms of one concern each. From the top:

* :mod:`~pyro_vae.training.fit`: builds the pieces of a run and runs its loop;
* :mod:`~pyro_vae.training.loop`: the epochs: steps, validation, checkpoints, early stopping;
* :mod:`~pyro_vae.training.resume`: checkpoints and resume (the state, the random streams);
* :mod:`~pyro_vae.training.record`: the run's record, and the check that a resumed run is the same run;
* :mod:`~pyro_vae.training.logs`: ``metrics.jsonl``, the epoch's line, the summary;
* :mod:`~pyro_vae.training.callbacks`: the ``Callback`` interface, called between epochs;
* :mod:`~pyro_vae.training.tracking`: trackers (TensorBoard, Weights & Biases, MLflow) as callbacks;
* :mod:`~pyro_vae.training.batches`: the seeded batches of an epoch (DDP slices, dynamic binarization);
* :mod:`~pyro_vae.training.step`: one optimizer step;
* :mod:`~pyro_vae.training.validation`: the validation ELBO and the family's measures;
* :mod:`~pyro_vae.training.prepare`: the data checked and prepared once;
* :mod:`~pyro_vae.training.schedules`, :mod:`~pyro_vae.training.signals`,
  :mod:`~pyro_vae.training.distributed`: KL warm-up and learning rate; Ctrl-C and SIGTERM; DDP;
* :mod:`~pyro_vae.training.finish`: the end of a run: test evaluation, figures and report.
"""
