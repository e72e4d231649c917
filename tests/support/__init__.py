"""Test helpers: the contract-checking API client, factories, a manual clock."""
