"""The only writers of the insights system: each public function is one transaction.

Import from the submodules; this package keeps them small and named by what they do.
"""
