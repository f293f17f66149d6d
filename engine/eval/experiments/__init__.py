"""Research code: ranking ideas measured against the product (scripts/shape_attempts.py), not served."""
