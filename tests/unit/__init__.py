"""The pure tier of the test suite (a package, so its module names never clash with tests/)."""
