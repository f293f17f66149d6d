"""Evaluation beside the product: metrics, baselines, the evaluation runner, catalog shapes, reports and experiments
(the [eval] extra).
"""
