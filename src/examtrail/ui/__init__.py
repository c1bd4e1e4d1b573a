"""The review pages at ``/ui/``: server-rendered HTML over the public API's token."""
