"""The run's stages, one module each: baselines -> calibrate -> plan -> tune -> report.

Each is a function of the job's task, the run directory and the machine meter that returns its
record (and writes it to the run directory, so an interrupted run keeps it and a resumed run
skips what is done). The run's driver (budgetft.runner.driver) calls them in order; the CLI's
`plan` and `train` commands call the same functions.
"""
