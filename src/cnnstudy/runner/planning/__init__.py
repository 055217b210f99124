"""What is decided before anything trains: the study file read and checked (studyfile, scopes,
precheck), its inputs made present (inputs), each run's action from its fingerprint (plan,
fingerprint, repeats, force, only), the disk it needs (space) and the study folder's lock (lock)."""
