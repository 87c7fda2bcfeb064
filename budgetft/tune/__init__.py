"""Ray Tune's side of a run: the trial function each worker runs (worker), the driver's tracker of
live trials (tracking), Ray's own session (ray_session), and the chaos benchmark's fault seam
(chaos). Ray itself is imported by the modules that need it, never by this package's import."""
