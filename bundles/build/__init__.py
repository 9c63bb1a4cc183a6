"""Build side (connected machine): collect artifacts into a stage, then assemble the bundle.

Nothing here runs on the offline host; verification lives in bundles.verify.
"""
