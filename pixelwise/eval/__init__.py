"""Evaluation: official-exact metrics (`metrics`), benchmark aggregation protocols (`protocols`), and the runner that
scores predictions or a `Predictor` on a benchmark (`runner`)."""
