"""Prefect 3 flows around the enrich library: the nightly enrichment and its deployment.

Tasks are thin wrappers of library calls; ``enrich`` itself never imports prefect.
"""
