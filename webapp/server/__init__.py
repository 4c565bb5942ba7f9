"""The web process under gunicorn: its configuration, the worker that receives each request
before a thread takes it, the limits on slow clients, and the caps on uploads and exports."""
