"""Use cases that combine the layers below (inspect and convert images, ingest, ...)."""
