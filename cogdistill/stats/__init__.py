"""Statistics over traces and human data: every formula of the package, pure functions over frames and
arrays, one per quantity (the report selects the data and calls them). Modules: docs/development.md."""
