"""A study, planned and carried out: validation and plans before anything trains (plan, fingerprint,
lock, inputs), one run (run, artifacts, tracking), repeats, sweeps (sweep), the order of work
(schedule) and who carries out each unit (units, executors: serial, local processes, Ray)."""
