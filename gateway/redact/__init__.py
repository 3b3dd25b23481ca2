"""Redaction to HIPAA Safe Harbor (45 CFR 164.514(b)(2)): the third action besides allow/block."""
