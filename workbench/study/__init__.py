"""Studies: the study schema and its tables (objectives, constraints, samplers), loading a study
file, its search space and ladder, the storage, workers and their supervisor, and the trials
as a table."""
