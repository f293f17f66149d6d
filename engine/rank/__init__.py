"""Rank layer: related-items queries over a loaded build (candidates, exclusions, policies, re-ranking, response items,
explanations).
"""
