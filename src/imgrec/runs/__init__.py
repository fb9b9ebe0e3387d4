"""Jobs that produce or change a run folder: train, retrain, compare (leaderboard), tune,
calibrate. Each ends in the bundle's run-folder writer."""
