"""Learning: rewards into VW examples, per-user history."""
