"""`olmorl bench …`: throughput measured against a baseline in the same run, reported as ratios."""
