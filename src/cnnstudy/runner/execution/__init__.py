"""What carries units out: a planned study carried out (carry), the order of work (schedule), the
unit itself (units), one run trained and scored (run), tracking, and who runs a unit: this process,
local workers or Ray (executors, ray_executor)."""
