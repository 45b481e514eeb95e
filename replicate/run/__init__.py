"""One run of a method on a task: the runner, its statistics, the run directory, environment and tracking.
Never imports report/."""
