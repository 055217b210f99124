"""A study, planned and carried out (study.run_study), in four parts: planning (everything decided
before anything trains), execution (the order of work, one unit, one run, and who runs it), results
(what a finished run leaves behind, read back) and search (sweeps)."""
