"""What is decided before anything trains: the study file read and checked (studyfile, scopes,
precheck, checks), its inputs made present and its splits made (inputs, prepare), each run's action
from its fingerprint (plan, fingerprint, repeats, force, only), the disk it needs (space) and the
study folder's lock (lock)."""
