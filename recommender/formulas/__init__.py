"""The formulas: written once, used as the solver's coefficients, the evaluator and the explanation.

Every function is pure and accepts plain numbers or numpy arrays of equal shape for the layout
arguments (tp, pp, dp, micro_batch, ...), so one call can price a whole candidate table.
Each docstring names the published form it implements.
"""
