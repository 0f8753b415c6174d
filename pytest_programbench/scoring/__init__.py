"""The score and the evidence beside it: the official evaluator, the verdict, the audit, gold, resume."""
