"""The OpenAPI 3.1 document served at ``/openapi.json``: the document and its schemas,
every path, the upload's operation, and the pieces they share."""
